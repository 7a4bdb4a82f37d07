"""libvirt's answers (domain XML, states, memory stats) as rollup's model: VMs and Hosts.

What prevents a live move, in the words of the model's Blocker:
- a host device passed through (`<hostdev>`): "pci" (or "vgpu" for mediated devices);
- a disk on local storage ("local-sr"): a file or block device whose file system is not a
  shared one (NFS, CephFS, GlusterFS, GFS2, OCFS2...), unless the host allows block
  migration (`rollup_libvirt_block_migration`: libvirt then copies the disk). Network
  disks (Ceph RBD, iSCSI, NBD...), read-only and shareable disks move as they are.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass

from rollup.model import VM, Blocker, Host, PowerState

KiB = 1024
SHARED_FILE_SYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb2",
        "smb3",
        "ceph",
        "fuse.glusterfs",
        "glusterfs",
        "gfs2",
        "gfs/gfs2",
        "ocfs2",
        "gpfs",
        "lustre",
        "beegfs",
        "fuse.quobyte",
        "fuse.ceph",
        "virtiofs",
    }
)

# virDomainState → the model's power states; a domain being shut down still runs.
_STATES: dict[int, PowerState] = {
    0: "Halted",  # NOSTATE
    1: "Running",  # RUNNING
    2: "Running",  # BLOCKED (idle, waiting for a timer)
    3: "Paused",  # PAUSED
    4: "Running",  # SHUTDOWN (shutting down)
    5: "Halted",  # SHUTOFF
    6: "Halted",  # CRASHED
    7: "Suspended",  # PMSUSPENDED
}


@dataclass(frozen=True)
class Disk:
    target: str  # vda, sdb...
    kind: str  # file, block, network, volume
    path: str  # file or device path; empty for network disks
    movable: bool  # shared by nature: network, read-only or shareable


@dataclass(frozen=True)
class DomainRecord:
    uuid: str
    name: str
    state: int
    max_memory_kib: int
    persistent: bool
    xml: str

    @property
    def power_state(self) -> PowerState:
        return _STATES.get(self.state, "Halted")


def disks(xml: str) -> list[Disk]:
    found: list[Disk] = []
    for disk in ElementTree.fromstring(xml).iterfind("./devices/disk"):
        if disk.get("device", "disk") not in ("disk", "lun"):
            continue  # CD-ROMs and floppies
        source = disk.find("source")
        target = disk.find("target")
        kind = disk.get("type", "file")
        path = ""
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("volume") or ""
        shared = (
            kind == "network"
            or disk.find("readonly") is not None
            or disk.find("shareable") is not None
        )
        found.append(
            Disk(
                target=target.get("dev", "?") if target is not None else "?",
                kind=kind,
                path=path,
                movable=shared or not path,
            )
        )
    return found


def disk_paths(xml: str) -> list[str]:
    """Paths whose file system decides whether the disk is shared."""
    return [d.path for d in disks(xml) if not d.movable and d.kind in ("file", "block")]


def blockers(
    record: DomainRecord, file_systems: Mapping[str, str], block_migration: bool
) -> tuple[Blocker, ...]:
    found: list[Blocker] = []
    root = ElementTree.fromstring(record.xml)
    for hostdev in root.iterfind("./devices/hostdev"):
        kind = hostdev.get("type", "other")
        address = hostdev.find("./source/address")
        where = (
            ":".join(
                (address.get(part) or "").removeprefix("0x")
                for part in ("domain", "bus", "slot", "function")
                if address.get(part)
            )
            if address is not None
            else ""
        )
        found.append(
            Blocker(
                kind="vgpu" if kind == "mdev" else "pci" if kind == "pci" else "other",
                code="HOSTDEV",
                params=(record.name, kind, where),
                reason=f"host device {kind} {where}".strip() + " is passed through to it",
            )
        )
    if block_migration:
        return tuple(found)
    for disk in disks(record.xml):
        if disk.movable:
            continue
        fs_type = file_systems.get(disk.path, "unknown")
        if disk.kind in ("file", "block") and fs_type in SHARED_FILE_SYSTEMS:
            continue
        found.append(
            Blocker(
                kind="local-sr",
                code="LOCAL_DISK",
                params=(record.name, disk.target, disk.path),
                reason=f"disk {disk.target} on local storage {disk.path} ({fs_type});"
                " set rollup_libvirt_block_migration: true to copy it",
            )
        )
    return tuple(found)


def vm_of(record: DomainRecord, host_id: str | None, blocked: tuple[Blocker, ...]) -> VM:
    state = record.power_state
    return VM(
        id=record.uuid,
        name=record.name,
        memory=record.max_memory_kib * KiB,
        power_state=state,
        host=host_id if state != "Halted" else None,
        blockers=blocked,
    )


def host_of(
    *,
    host_id: str,
    name: str,
    address: str,
    memory_stats: Mapping[str, int] | None,
    guests_memory: int,
    version: str,
    platform_version: str,
    enabled: bool,
    live: bool,
    boot_mark: str,
) -> Host:
    """A Host; its guests' memory counts as used, the rest of what is not free as overhead."""
    total = free = 0
    if memory_stats:
        total = memory_stats.get("total", 0) * KiB
        # What the kernel can hand to a new guest: free pages plus reclaimable caches.
        free = sum(memory_stats.get(key, 0) for key in ("free", "buffers", "cached")) * KiB
    return Host(
        id=host_id,
        name=name,
        address=address,
        memory_total=total,
        memory_overhead=max(0, total - free - guests_memory),
        memory_free=free,
        version=version,
        platform_version=platform_version,
        enabled=enabled,
        live=live,
        is_master=False,
        boot_mark=boot_mark,
    )


def version_text(number: int) -> str:
    """libvirt's version numbers (1000000 * major + 1000 * minor + release) as text."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def choose(current: VM | None, candidate: VM) -> VM:
    """A domain seen on two hosts (mid-migration, or defined on both): the running one."""
    if current is None:
        return candidate
    rank = {"Running": 0, "Paused": 1, "Suspended": 2, "Halted": 3}
    return candidate if rank[candidate.power_state] < rank[current.power_state] else current
