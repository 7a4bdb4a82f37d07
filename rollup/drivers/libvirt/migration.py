"""A live migration: peer-to-peer, persistent on the destination, undefined on the source.

`migrateToURI3` blocks until the move is over, and libvirt answers jobStats on the
migrating connection only once it is; so the migration runs on a connection of its own
in a helper thread while the caller's thread watches the job on the link's shared
connection and reports progress (memory copied of memory to copy). When it is done the
destination's record of the finished job (VIR_DOMAIN_JOB_STATS_COMPLETED: memory moved,
downtime) gives the last progress report and the log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rollup.drivers.libvirt.link import HostLink, binding, translate
from rollup.drivers.libvirt.records import disk_paths
from rollup.errors import DriverError, MigrationRefused

log = logging.getLogger("rollup.drivers.libvirt")

POLL_SECONDS = 0.05  # a small guest moves in well under a second: look often
BUSY_WAIT_SECONDS = 600.0  # how long to wait for a job already running on the domain


def flags(libvirt: Any, block: bool) -> int:
    value = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
    )
    if block:
        value |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    return value


def fraction(stats: Mapping[str, Any]) -> float | None:
    """How much of the job is done, from jobStats; None before the copy has started."""
    total = int(stats.get("data_total") or 0)
    if total <= 0:
        return None
    remaining = int(stats.get("data_remaining") or 0)
    return max(0.0, min(1.0, (total - remaining) / total))


def migrate(
    source: HostLink,
    dest: HostLink,
    vm: str,
    vm_name: str,
    progress: Callable[[float], None] | None,
) -> None:
    libvirt = binding()
    wait_for_running_job(source, vm, vm_name)
    what = f"migrate VM {vm_name} from {source.name} to {dest.name}"
    xml = source.call(f"read VM {vm_name}", lambda c: c.lookupByUUIDString(vm).XMLDesc(0))
    block = source.block_migration and bool(disk_paths(xml))
    outcome: list[BaseException] = []

    def move() -> None:
        try:
            conn = source.open()
        except DriverError as error:
            outcome.append(error)
            return
        try:
            domain = conn.lookupByUUIDString(vm)
            domain.migrateToURI3(dest.uri, {}, flags(libvirt, block))
        except BaseException as error:  # reported in the caller's thread
            outcome.append(error)
        finally:
            conn.close()

    mover = threading.Thread(target=move, name=f"rollup-migrate-{vm_name}", daemon=True)
    started = time.monotonic()
    mover.start()
    last: float | None = None
    while mover.is_alive():
        mover.join(POLL_SECONDS)
        done = _job_fraction(source, vm)
        if done is not None and done != last and progress is not None:
            progress(min(done, 0.99))  # "done" is the rollout's to say
            last = done
    if outcome:
        error = outcome[0]
        translated = (
            error if isinstance(error, DriverError) else translate(error, what)  # type: ignore[arg-type]
        )
        raise MigrationRefused(
            vm,
            dest.name,
            f"VM {vm_name} cannot move to {dest.name}: {translated.message}",
            translated.code,
            translated.params,
        )
    _report(dest, vm, vm_name, time.monotonic() - started, progress)


def _job_fraction(link: HostLink, vm: str) -> float | None:
    try:
        return fraction(
            link.call("read a migration job", lambda c: c.lookupByUUIDString(vm).jobStats())
        )
    except DriverError:
        return None  # the domain just left the source: the job is over


def wait_for_running_job(link: HostLink, vm: str, vm_name: str) -> None:
    """A job left by an earlier controller (killed mid-migration) must end first."""
    libvirt = binding()
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        stats = link.call(f"read VM {vm_name}'s job", lambda c: c.lookupByUUIDString(vm).jobStats())
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return
        if time.monotonic() > deadline:
            raise MigrationRefused(
                vm,
                link.name,
                f"VM {vm_name} has had a job running on {link.name} for"
                f" {BUSY_WAIT_SECONDS:.0f}s: see `virsh domjobinfo {vm_name}` there",
                "VIR_ERR_OPERATION_INVALID",
            )
        log.info("VM %s: waiting for a job already running on %s", vm_name, link.name)
        time.sleep(0.5)


def _report(
    dest: HostLink,
    vm: str,
    vm_name: str,
    seconds: float,
    progress: Callable[[float], None] | None,
) -> None:
    libvirt = binding()
    try:
        stats = dest.call(
            f"read VM {vm_name}'s finished migration",
            # Kept: an admin's `virsh domjobinfo --completed` still shows it afterwards.
            lambda c: c.lookupByUUIDString(vm).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
            ),
        )
    except DriverError as error:
        log.info("migrated VM %s to %s in %.1fs (%s)", vm_name, dest.name, seconds, error)
        return
    done = fraction(stats)
    if done is not None and progress is not None:
        progress(done)
    log.info(
        "migrated VM %s to %s in %.1fs: %.1f MiB copied, downtime %s ms",
        vm_name,
        dest.name,
        seconds,
        int(stats.get("data_processed", 0)) / 2**20,
        stats.get("downtime", "?"),
    )
