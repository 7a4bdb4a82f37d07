"""One libvirt host as a snapshot reads it: its libvirtd, then SSH for what libvirt lacks.

libvirtd gives the domains (with their XML) and the memory; SSH (hostos.py) gives the
boot id, the version, the disabled marker, the file systems under VM disks and, on the
pool's first host, the run lock. A host whose libvirtd does not answer is read as down;
one whose SSH does not answer is read as not live, its VMs still listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rollup.drivers.libvirt import hostos
from rollup.drivers.libvirt.link import HostLink, binding
from rollup.drivers.libvirt.records import DomainRecord, blockers, disk_paths, host_of, vm_of
from rollup.errors import DriverError
from rollup.model import VM, Host

log = logging.getLogger("rollup.drivers.libvirt")


@dataclass(frozen=True)
class HostRead:
    """One host as read for a snapshot: the model Host and its domains."""

    host: Host
    vms: tuple[VM, ...]
    lock: str | None


def read_host(link: HostLink, host_id: str, platform: str, with_lock: bool) -> HostRead:
    """Host `link` as it is now; `with_lock` on the host that keeps the run lock file."""
    records: list[DomainRecord] = []
    stats: dict[str, int] | None = None
    try:
        records, stats = link.call(f"read host {link.name}", domains_and_memory)
    except DriverError as error:
        log.info("host %s: libvirt does not answer: %s", link.name, error.message)
        return _down(link, host_id, platform)
    paths = sorted({path for record in records for path in disk_paths(record.xml)})
    try:
        facts = hostos.probe(link.remote, paths, lock=with_lock)
    except DriverError as error:
        log.info("host %s: SSH does not answer: %s", link.name, error.message)
        facts = None
    vms = tuple(
        vm_of(
            record,
            host_id,
            blockers(
                record,
                facts.file_systems if facts else {},
                link.block_migration,
            ),
        )
        for record in records
    )
    running = sum(vm.memory for vm in vms if vm.power_state != "Halted")
    host = host_of(
        host_id=host_id,
        name=link.name,
        address=link.address,
        memory_stats=stats,
        guests_memory=running,
        version=(facts.version if facts else "") or platform,
        platform_version=platform,
        enabled=facts is not None and facts.disabled is None,
        live=facts is not None,
        boot_mark=facts.boot_id if facts else "",
    )
    return HostRead(host, vms, facts.lock if facts else None)


def _down(link: HostLink, host_id: str, platform: str) -> HostRead:
    host = host_of(
        host_id=host_id,
        name=link.name,
        address=link.address,
        memory_stats=None,
        guests_memory=0,
        version="",
        platform_version=platform,
        enabled=False,
        live=False,
        boot_mark="",
    )
    return HostRead(host, (), None)


def domains_and_memory(conn: Any) -> tuple[list[DomainRecord], dict[str, int]]:
    """Every domain libvirtd knows on `conn`, and the host's memory statistics."""
    libvirt = binding()
    records = []
    for domain in conn.listAllDomains(0):
        try:
            state, max_memory = domain.info()[:2]
            records.append(
                DomainRecord(
                    uuid=domain.UUIDString(),
                    name=domain.name(),
                    state=state,
                    max_memory_kib=max_memory,
                    persistent=bool(domain.isPersistent()),
                    xml=domain.XMLDesc(0),
                )
            )
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            # It left (a migration finished) between the listing and now.
    stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    return records, dict(stats)
