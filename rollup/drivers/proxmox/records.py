"""The cluster's answers as rollup's model: nodes as Hosts, QEMU guests as VMs.

A node's id is its name (a cluster's node names are unique and stable; PVE has no host
UUID), a VM's its vmid. Memory: a node's `maxmem` is its RAM and `mem` what is in use,
its own processes and its guests; a guest occupies its `maxmem` (balloon or not, that
is what it may take). So a node's overhead is what is in use beyond its running guests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rollup.model import VM, Blocker, BlockerKind, Host, Pending, Update

# What only a boot brings in: the kernel, firmware, CPU microcode.
REBOOT_PACKAGES = re.compile(r"^(proxmox-kernel-|pve-kernel-|pve-firmware|.*-microcode)")
# A running guest keeps the QEMU it started with until it moves or restarts.
QEMU_PACKAGES = ("pve-qemu-kvm",)
PIN_KINDS: dict[str, BlockerKind] = {"hostpci": "pci", "usb": "other"}


def version_of(pveversion: str) -> str:
    """ "pve-manager/8.3.0/c1689ccb1065a83b" → "8.3.0"."""
    parts = pveversion.split("/")
    return parts[1] if len(parts) > 1 else pveversion


def host(
    entry: Mapping[str, Any],
    address: str,
    guests: Iterable[VM],
    maintenance: bool,
    boot_mark: str,
    version: str,
) -> Host:
    total = int(entry.get("maxmem") or 0)
    used = int(entry.get("mem") or 0)
    running = sum(vm.memory for vm in guests if vm.running)
    return Host(
        id=str(entry["node"]),
        name=str(entry["node"]),
        address=address,
        memory_total=total,
        memory_overhead=max(0, used - running),
        memory_free=max(0, total - used),
        version=version,
        platform_version=version,
        enabled=not maintenance,
        live=entry.get("status") == "online",
        is_master=False,
        boot_mark=boot_mark,
    )


def vm(entry: Mapping[str, Any], blockers: tuple[Blocker, ...] = ()) -> VM:
    status = str(entry.get("status", ""))
    running = status == "running"
    state = "Running" if running else "Paused" if status == "paused" else "Halted"
    return VM(
        id=str(entry["vmid"]),
        name=str(entry.get("name") or f"VM {entry['vmid']}"),
        memory=int(entry.get("maxmem") or 0),
        power_state=state,  # type: ignore[arg-type]
        host=str(entry["node"]) if running or status == "paused" else None,
        # A stopped guest's configuration lives on a node: where it starts again.
        affinity=None if running else str(entry["node"]),
        blockers=blockers,
    )


def blockers(check: Mapping[str, Any]) -> tuple[Blocker, ...]:
    """What GET /nodes/{node}/qemu/{vmid}/migrate says keeps a running guest in place."""
    found = []
    for disk in check.get("local_disks") or ():
        volid = str(disk.get("volid", "")) if isinstance(disk, Mapping) else str(disk)
        storage = volid.split(":", 1)[0]
        found.append(
            Blocker(
                "local-sr", "LOCAL_DISK", (volid,), f"disk {volid} on local storage '{storage}'"
            )
        )
    for resource in check.get("local_resources") or ():
        name = str(resource)
        kind: BlockerKind = next(
            (k for prefix, k in PIN_KINDS.items() if name.startswith(prefix)), "other"
        )
        found.append(Blocker(kind, "LOCAL_RESOURCE", (name,), f"local device {name}"))
    return tuple(found)


def pending(entries: Iterable[Mapping[str, Any]]) -> Pending:
    """GET /nodes/{node}/apt/update, as what the node has pending and what it demands."""
    updates = []
    needs: list[str] = []
    for entry in entries:
        name = str(entry.get("Package", ""))
        version, _, release = str(entry.get("Version", "")).rpartition("-")
        updates.append(
            Update(
                name=name,
                version=version or release,
                release=release if version else "",
                summary=str(entry.get("Title", "")),
                severity="High" if entry.get("Priority") in ("important", "required") else "",
            )
        )
        if REBOOT_PACKAGES.match(name) and "reboot_host" not in needs:
            needs.append("reboot_host")
        if name in QEMU_PACKAGES and "restart_device_model" not in needs:
            needs.append("restart_device_model")
    return Pending(updates=tuple(sorted(updates, key=lambda u: u.name)), guidance=tuple(needs))
