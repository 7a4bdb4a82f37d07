"""XenAPI records → rollup's model: pure functions, no I/O, tested from recorded fixtures.

The driver fetches everything with a handful of `get_all_records` calls and hands the
dicts to `parse_pool`; nothing here talks to a pool or reads a clock.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollup.drivers.run_lock import parse_lock
from rollup.errors import DriverError
from rollup.model import VM, Blocker, BlockerKind, Host, Pool, version_key

NULL_REF = "OpaqueRef:NULL"
LOCK_KEY = "rollup.lock"
# When packages were last installed, in host.other_config, as Xen Orchestra writes it:
# a host booted before it needs a reboot.
PATCHED_AT_KEY = "rpm_patch_installation_time"
ROLLING_UPGRADE_KEY = "rolling_upgrade_in_progress"

Record = Mapping[str, Any]

# Evacuation errors that pin a VM to its host whatever the other hosts look like.
PIN_KINDS: dict[str, BlockerKind] = {
    "VM_REQUIRES_SR": "local-sr",
    "VM_HAS_PCI_ATTACHED": "pci",
    "VM_HAS_VGPU": "vgpu",
    "VM_HAS_SRIOV_VIF": "sriov",
}

# Evacuation errors about room or HA on the other hosts, not about the VM itself: the
# planner computes capacity from the snapshot, so these are not pins.
NOT_PINS = frozenset(
    {
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        "NO_HOSTS_AVAILABLE",
        "HOST_EVACUATE_VM_NOT_HA_PROTECTED",
    }
)


@dataclass(frozen=True)
class PoolRecords:
    """What one snapshot fetched, keyed by ref as XenAPI returns it."""

    pool: Mapping[str, Record]
    hosts: Mapping[str, Record]
    host_metrics: Mapping[str, Record]
    vms: Mapping[str, Record]
    # host ref → host.get_vms_which_prevent_evacuation(host): VM ref → [CODE, params...]
    evacuation_errors: Mapping[str, Mapping[str, list[str]]] = field(default_factory=dict)
    sr_names: Mapping[str, str] = field(default_factory=dict)  # SR ref → name_label


def parse_pool(records: PoolRecords) -> Pool:
    if len(records.pool) != 1:
        raise DriverError(f"expected one pool record, got {len(records.pool)}")
    ((pool_ref, pool),) = records.pool.items()
    master_ref = _field(pool, "pool", pool_ref, "master")
    uuids = {ref: _field(rec, "host", ref, "uuid") for ref, rec in records.hosts.items()}
    dom0_memory = _control_domain_memory(records.vms)
    hosts = tuple(
        sorted(
            (
                parse_host(ref, rec, records.host_metrics, dom0_memory.get(ref, 0), master_ref)
                for ref, rec in records.hosts.items()
            ),
            key=lambda host: host.name,
        )
    )
    blockers = parse_blockers(records)
    vms = tuple(
        sorted(
            (
                parse_vm(ref, rec, uuids, blockers.get(ref, ()))
                for ref, rec in records.vms.items()
                if is_guest(rec)
            ),
            key=lambda vm: vm.name,
        )
    )
    other_config = _field(pool, "pool", pool_ref, "other_config")
    kind = flavor(records.hosts.get(master_ref, {}))
    return Pool(
        id=_field(pool, "pool", pool_ref, "uuid"),
        name=_field(pool, "pool", pool_ref, "name_label"),
        driver="xenapi",
        master=uuids.get(master_ref),
        ha_enabled=bool(_field(pool, "pool", pool_ref, "ha_enabled")),
        hosts=hosts,
        vms=vms,
        lock=parse_lock(other_config.get(LOCK_KEY)),
        rolling_upgrade=ROLLING_UPGRADE_KEY in other_config,
        flavor=kind,
        # Only XenServer answers what is pending from its last sync.
        updates_synced_at=xapi_seconds(pool.get("last_update_sync"))
        if kind == "xenserver"
        else None,
    )


def xapi_seconds(value: Any) -> float | None:
    """A xapi DateTime (20261207T21:40:00Z) as seconds since the epoch; None for none
    (xapi's epoch, or a field an older pool lacks)."""
    text = str(getattr(value, "value", value) or "").removesuffix("Z")
    for fmt in ("%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            seconds = float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
        return seconds if seconds > 0 else None
    return None


def parse_host(
    ref: str,
    rec: Record,
    host_metrics: Mapping[str, Record],
    control_domain_memory: int,
    master_ref: str,
) -> Host:
    """One host; `control_domain_memory` is what its dom0 occupies (static max + overhead)."""
    metrics = host_metrics.get(_field(rec, "host", ref, "metrics"))
    software = _field(rec, "host", ref, "software_version")
    other_config = _field(rec, "host", ref, "other_config")
    return Host(
        id=_field(rec, "host", ref, "uuid"),
        name=_field(rec, "host", ref, "name_label"),
        address=_field(rec, "host", ref, "address"),
        # A host without metrics is one xapi has not heard from: not live, no memory.
        memory_total=int(metrics["memory_total"]) if metrics else 0,
        memory_overhead=int(_field(rec, "host", ref, "memory_overhead")) + control_domain_memory,
        memory_free=int(metrics["memory_free"]) if metrics else 0,
        version=software.get("product_version", ""),
        platform_version=software.get("platform_version", ""),
        enabled=bool(_field(rec, "host", ref, "enabled")),
        live=bool(metrics["live"]) if metrics else False,
        is_master=ref == master_ref,
        boot_mark=str(other_config.get("boot_time", "")),
        agent_start_time=str(other_config.get("agent_start_time", "")),
        build_number=software.get("build_number", ""),
        pending_guidances=pending_guidances(rec, other_config),
        patched_at=str(other_config.get(PATCHED_AT_KEY, "")),
    )


def pending_guidances(rec: Record, other_config: Mapping[str, Any]) -> tuple[str, ...]:
    """What must still happen on the host after an install, in xapi's words. XCP-ng
    keeps no guidances: a host booted before its last install (Xen Orchestra's rule)
    needs `reboot_host`. Older xapi has neither: nothing, as far as it can say."""
    found = [str(g) for g in rec.get("pending_guidances", ())]
    # A failed livepatch leaves reboot_host_on_*livepatch_failure in the recommended list
    # (xen-api repository_helpers.ml update_livepatch_failure_guidance); XenCenter acts
    # on recommended guidance too, and so does rollup: the host reboots.
    found += [
        str(g)
        for g in rec.get("pending_guidances_recommended", ())
        if str(g).startswith("reboot_host") and str(g) not in found
    ]
    if flavor(rec) == "xcp-ng" and "reboot_host" not in found:
        try:
            installed = float(other_config.get(PATCHED_AT_KEY, ""))
            booted = float(other_config.get("boot_time", ""))
        except ValueError:
            return tuple(found)
        if booted < installed:
            found.append("reboot_host")
    return tuple(found)


def flavor(host: Record) -> str:
    """How a pool's hosts list and install updates, from its master's software version:
    "xcp-ng" (the updater.py plugin), "xenserver" (XenServer 8: /updates and
    host.apply_updates), or "" (neither: Citrix Hypervisor 8.2 and older)."""
    software = host.get("software_version", {})
    brand = str(software.get("product_brand", ""))
    if brand == "XCP-ng":
        return "xcp-ng"
    newer_than_8_3 = version_key(str(software.get("product_version", ""))) > (8, 3, 0)
    if brand == "XenServer" and newer_than_8_3:
        return "xenserver"
    return ""


def is_guest(rec: Record) -> bool:
    """Templates, snapshots and control domains are never moved, so never listed."""
    return not (
        rec.get("is_a_template") or rec.get("is_a_snapshot") or rec.get("is_control_domain")
    )


def vm_memory(ref: str, rec: Record) -> int:
    """Bytes a running VM takes from its host: its static maximum plus Xen's overhead."""
    return int(_field(rec, "VM", ref, "memory_static_max")) + int(
        _field(rec, "VM", ref, "memory_overhead")
    )


def parse_vm(
    ref: str, rec: Record, host_uuids: Mapping[str, str], blockers: tuple[Blocker, ...]
) -> VM:
    return VM(
        id=_field(rec, "VM", ref, "uuid"),
        name=_field(rec, "VM", ref, "name_label"),
        memory=vm_memory(ref, rec),
        power_state=_field(rec, "VM", ref, "power_state"),
        host=host_uuids.get(_field(rec, "VM", ref, "resident_on")),
        affinity=host_uuids.get(rec.get("affinity", NULL_REF)),
        ha_priority=rec.get("ha_restart_priority", ""),
        blockers=blockers,
        pending_guidances=tuple(str(g) for g in rec.get("pending_guidances", ())),
    )


def parse_blockers(records: PoolRecords) -> dict[str, tuple[Blocker, ...]]:
    """VM ref → the reasons it cannot leave its host, from each host's evacuation check."""
    found: dict[str, tuple[Blocker, ...]] = {}
    for host_ref, errors in records.evacuation_errors.items():
        host_name = records.hosts.get(host_ref, {}).get("name_label", host_ref)
        for vm_ref, error in errors.items():
            blocker = parse_blocker(error, host_name, records.sr_names)
            if blocker is not None:
                found[vm_ref] = (*found.get(vm_ref, ()), blocker)
    return found


def parse_blocker(error: list[str], host_name: str, sr_names: Mapping[str, str]) -> Blocker | None:
    """One `[CODE, params...]` from get_vms_which_prevent_evacuation; None if not a pin."""
    if not error:
        return None
    code, params = str(error[0]), tuple(str(p) for p in error[1:])
    if code in NOT_PINS:
        return None
    kind = PIN_KINDS.get(code, "other")
    if kind == "local-sr":
        sr = params[1] if len(params) > 1 else ""
        reason = f"disk on host-local SR '{sr_names.get(sr, sr)}' of {host_name}"
    elif kind == "pci":
        reason = f"PCI device passed through on {host_name}"
    elif kind == "vgpu":
        reason = f"vGPU attached on {host_name}"
    elif kind == "sriov":
        reason = f"SR-IOV network interface on {host_name}"
    else:
        # Unknown to us: fail closed, the VM stays put until a person looks.
        reason = f"{host_name} cannot evacuate it: {' '.join((code, *params))}"
    return Blocker(kind=kind, code=code, params=params, reason=reason)


def sr_refs(evacuation_errors: Mapping[str, Mapping[str, list[str]]]) -> set[str]:
    """SRs named by VM_REQUIRES_SR errors, whose names the blocker reasons need."""
    return {
        str(error[2])
        for errors in evacuation_errors.values()
        for error in errors.values()
        if len(error) > 2 and error[0] == "VM_REQUIRES_SR"
    }


def _control_domain_memory(vms: Mapping[str, Record]) -> dict[str, int]:
    """Host ref → bytes its control domain occupies."""
    memory: dict[str, int] = {}
    for ref, rec in vms.items():
        if rec.get("is_control_domain") and not rec.get("is_a_snapshot"):
            host = rec.get("resident_on", NULL_REF)
            memory[host] = memory.get(host, 0) + vm_memory(ref, rec)
    return memory


def _field(rec: Record, cls: str, ref: str, name: str) -> Any:
    # Fail with the object and the field rather than a bare KeyError deep in a snapshot.
    try:
        return rec[name]
    except KeyError:
        raise DriverError(
            f"XenAPI {cls} record {rec.get('uuid', ref)} has no field {name!r}: "
            "is this a XenServer / XCP-ng pool?"
        ) from None
