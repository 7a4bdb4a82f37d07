"""The libvirt/KVM driver: a pool is an inventory group of hosts, each its own libvirtd.

There is no pool API and no master (`Pool.master` is None: the planner orders hosts by
policy alone). What each call does:

- snapshot: every host at once (hostread.py) — its libvirtd (host UUID =
  `Host.id`, memory, domains and their XML) and, over SSH, what libvirt does not know
  (hostos.py: boot id = `Host.boot_mark`, version, the disabled marker, the file
  systems under VM disks);
- disable / enable: the marker file /run/rollup/disabled (libvirt has no such flag);
  a marked host is `enabled=False`, so placement leaves it alone;
- migrate: live, peer-to-peer, persistent on the destination, undefined on the source,
  progress from jobStats on a second connection (migration.py);
- reboot over SSH; wait_back: libvirt answers again, the boot id changed, not marked;
- lock: a file on the first host (rollup/drivers/host_file_lock.py, run_lock.py);
  HA: libvirt has none.

The pieces: link.py (connections, error translation), records.py (model),
hostread.py (one host read), hostos.py (SSH), migration.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.etree import ElementTree

from rollup.drivers import (
    UNFOLLOWED,
    Connection,
    Follow,
    HaState,
    InventoryHost,
    PoolUpdates,
    Progress,
)
from rollup.drivers.host_file_lock import HostFileStore
from rollup.drivers.libvirt import hostos
from rollup.drivers.libvirt.hostos import LOCK_PATH
from rollup.drivers.libvirt.hostread import HostRead, domains_and_memory, read_host
from rollup.drivers.libvirt.link import HostLink, binding
from rollup.drivers.libvirt.migration import migrate
from rollup.drivers.libvirt.records import choose, version_text
from rollup.drivers.run_lock import HoldsRunLock, RunLock, parse_lock
from rollup.errors import BadInput, DriverError, HostTimeout, PoolUnreachable
from rollup.model import VM, Host, Pool
from rollup.text.plurals import noun, verb

log = logging.getLogger("rollup.drivers.libvirt")

SHUTDOWN_SECONDS = 60.0  # a clean shutdown, before the guest is powered off
WAIT_INTERVAL = 0.5  # how often wait_back asks a rebooting host
GONE_SECONDS = 120.0  # how long a host asked to reboot may take to go down


class LibvirtDriver(HoldsRunLock):
    """The hosts of one inventory group, each reached through its own libvirtd."""

    name = "libvirt"

    def __init__(self, hosts: Sequence[InventoryHost], pool_name: str) -> None:
        if not hosts:
            raise BadInput(f"libvirt pool {pool_name}: list its hosts in the inventory group")
        binding()
        self.pool_name = pool_name
        self.links = [HostLink(host) for host in hosts]
        self._executor = ThreadPoolExecutor(
            min(8, len(self.links)), thread_name_prefix="rollup-libvirt"
        )
        self._ids: dict[str, str] = {}  # host name → libvirt host UUID
        self._platform: dict[str, str] = {}
        # On disk on the first host, so it survives that host's reboot.
        self._lock = RunLock(HostFileStore([self.links[0].remote], pool_name, LOCK_PATH))
        # Every host must answer once: its UUID is its identity in plans and journals.
        unreachable = []
        errors = self._executor.map(self._identify, self.links)
        for link, error in zip(self.links, errors, strict=True):
            if error is not None:
                unreachable.append(f"{link.name} ({error.message})")
        if unreachable:
            self.close()
            raise PoolUnreachable(
                f"libvirt pool {pool_name}: cannot reach {'; '.join(unreachable)}",
                transient=True,
            )

    def _identify(self, link: HostLink) -> DriverError | None:
        try:
            capabilities = link.call(
                f"read host {link.name}'s capabilities", lambda c: c.getCapabilities()
            )
            versions = link.call(
                f"read host {link.name}'s versions", lambda c: (c.getLibVersion(), c.getVersion())
            )
        except DriverError as error:
            return error
        found = ElementTree.fromstring(capabilities).findtext("./host/uuid")
        self._ids[link.name] = found or str(uuid.uuid5(uuid.NAMESPACE_URL, link.uri))
        self._platform[link.name] = (
            f"libvirt {version_text(versions[0])}, QEMU {version_text(versions[1])}"
        )
        return None

    # -- reading ---------------------------------------------------------------------

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        reads = list(self._executor.map(self._read, self.links))
        by_id: dict[str, VM] = {}
        for read in reads:
            for vm in read.vms:
                by_id[vm.id] = choose(by_id.get(vm.id), vm)
        held = reads[0].lock
        return Pool(
            id=f"libvirt:{self.pool_name}",
            name=self.pool_name,
            driver="libvirt",
            master=None,
            ha_enabled=False,
            hosts=tuple(read.host for read in reads),
            vms=tuple(sorted(by_id.values(), key=lambda vm: vm.name)),
            lock=parse_lock(held),
        )

    def _read(self, link: HostLink) -> HostRead:
        return read_host(
            link, self._ids[link.name], self._platform[link.name], link is self.links[0]
        )

    # -- hosts -----------------------------------------------------------------------

    def pending_updates(self, hosts: Collection[str] | None = None) -> PoolUpdates:
        # libvirt knows nothing of packages: the playbook decides, a target version checks.
        return PoolUpdates()

    def install_updates(
        self, host: str, packages: Sequence[str] = (), hash_: str = "", follow: Follow = UNFOLLOWED
    ) -> tuple[str, ...]:
        raise DriverError("libvirt hosts are patched by the playbook", "NO_UPDATE_SERVICE")

    def restart_toolstack(self, host: str, timeout: float) -> Host:
        raise DriverError("libvirt has no toolstack to restart", "NO_TOOLSTACK")

    def restart_vm(self, vm: str) -> None:
        raise DriverError("libvirt pools report no VM that needs a restart", "NO_GUIDANCE")

    def installer_problem(self, host: str, url: str) -> str:
        return "libvirt hosts are upgraded by the playbook, not a network installer"

    def prepare_upgrade(self, host: str, url: str) -> None:
        raise DriverError("libvirt hosts have no network installer", "NO_INSTALLER")

    def disable(self, host: str) -> None:
        link = self._link(host)
        hostos.mark_disabled(link.remote)
        log.debug("disabled host %s", link.name)

    def enable(self, host: str) -> None:
        link = self._link(host)
        hostos.clear_disabled(link.remote)
        log.debug("enabled host %s", link.name)

    def reboot(self, host: str) -> None:
        link = self._link(host)
        facts = hostos.probe(link.remote)
        if facts.disabled is None:
            raise DriverError(
                f"could not reboot host {link.name}: it is still enabled; disable and"
                " evacuate it first",
                "HOST_NOT_DISABLED",
                (link.name,),
            )
        running = [
            r.name
            for r in link.call(f"read host {link.name}", domains_and_memory)[0]
            if r.power_state != "Halted"
        ]
        if running:
            raise DriverError(
                f"could not reboot host {link.name}: {noun(len(running), 'VM')} still"
                f" {verb(len(running), 'runs', 'run')} on it ({', '.join(running)});"
                " evacuate it first",
                "HOST_IN_USE",
                (link.name, *running),
            )
        hostos.reboot(link.remote)
        log.debug("host %s is rebooting", link.name)

    def wait_back(self, host: str, since: str, timeout: float) -> Host:
        """Block until libvirt answers again on `host`, its boot id is not `since` and it
        is not marked disabled (a reboot clears the mark, as xapi re-enables a host)."""
        link = self._link(host)
        deadline = time.monotonic() + timeout
        last = "not asked yet"
        self._wait_gone(link, since, min(deadline, time.monotonic() + GONE_SECONDS))
        while True:
            read = self._read(link)
            state = read.host
            if state.live and state.boot_mark != since and state.enabled:
                return state
            if not state.live:
                last = "libvirt or SSH does not answer"
            elif state.boot_mark == since:
                last = "it has not rebooted yet (same boot id)"
            else:
                last = "it is marked disabled"
            if time.monotonic() + WAIT_INTERVAL > deadline:
                raise HostTimeout(
                    f"host {link.name} did not come back within {timeout:.0f}s (last seen: {last})",
                    "HOST_TIMEOUT",
                    (host, since),
                )
            time.sleep(WAIT_INTERVAL)

    def _wait_gone(self, link: HostLink, since: str, until: float) -> None:
        """Until a host asked to reboot goes down, watch it through libvirt alone: an SSH
        session still open when the host goes down is cut in the middle (on a real host
        it may hang; a shell cut in its rc files can leave locks behind)."""
        try:
            if hostos.probe(link.remote).boot_id != since:
                return  # it rebooted already (a resumed run)
        except DriverError:
            return  # down already
        while time.monotonic() < until:
            try:
                link.call(f"ask host {link.name}", lambda c: c.getLibVersion())
            except DriverError:
                return
            time.sleep(0.2)

    # -- VMs -------------------------------------------------------------------------

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None:
        target = self._link(dest)
        source, name = self._locate(vm)
        if source is None:
            raise DriverError(f"could not migrate VM {name}: it runs on no host", "NO_DOMAIN")
        if source is target:
            log.debug("VM %s already runs on %s", name, target.name)
            return
        migrate(source, target, vm, name, progress)

    def shutdown_vm(self, vm: str) -> None:
        """Clean (ACPI) shutdown, then power off if the guest has not stopped in time."""
        link, name = self._locate(vm)
        if link is None:
            return
        try:
            link.call(f"shut down VM {name}", lambda c: c.lookupByUUIDString(vm).shutdown())
        except DriverError as error:
            log.info("VM %s: clean shutdown refused (%s); powering it off", name, error.code)
        else:
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            while time.monotonic() < deadline:
                if not self._active(link, vm, name):
                    return
                time.sleep(0.5)
            log.info("VM %s still runs after a clean shutdown; powering it off", name)
        try:
            link.call(f"power off VM {name}", lambda c: c.lookupByUUIDString(vm).destroy())
        except DriverError as error:
            if error.code != "VIR_ERR_OPERATION_INVALID" or self._active(link, vm, name):
                raise

    def start_vm(self, vm: str, host: str) -> None:
        """Start a halted VM on `host`, moving its definition there first if needed."""
        libvirt = binding()
        target = self._link(host)
        running, name = self._locate(vm)
        if running is target:
            return
        if running is not None:
            raise DriverError(f"could not start VM {name}: it runs on {running.name}", "RUNNING")
        owner = next((link for link in self.links if self._defined(link, vm)), None)
        if owner is None:
            raise DriverError(f"could not start VM {vm}: no host has it defined", "NO_DOMAIN")
        if owner is not target:
            flags = (
                libvirt.VIR_MIGRATE_OFFLINE
                | libvirt.VIR_MIGRATE_PEER2PEER
                | libvirt.VIR_MIGRATE_PERSIST_DEST
                | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
            )
            owner.call(
                f"move VM {vm}'s definition to {target.name}",
                lambda c: c.lookupByUUIDString(vm).migrateToURI3(target.uri, {}, flags),
            )
        target.call(f"start VM {vm} on {target.name}", lambda c: c.lookupByUUIDString(vm).create())

    # -- HA ------------------------------------------------------------------------

    def pause_ha(self) -> HaState:
        return HaState(enabled=False)  # libvirt has no HA of its own to pause

    def restore_ha(self, state: HaState) -> None:
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for link in self.links:
            link.close()

    # -- plumbing --------------------------------------------------------------------

    def _link(self, host: str) -> HostLink:
        for link in self.links:
            if self._ids.get(link.name) == host:
                return link
        raise DriverError(f"no host {host} in libvirt pool {self.pool_name}", "NO_HOST", (host,))

    def _locate(self, vm: str) -> tuple[HostLink | None, str]:
        """The host a VM runs on (None: none), and its name."""
        name = vm
        for link in self.links:
            try:
                active, found = link.call(f"find VM {vm} on {link.name}", lambda c: _lookup(c, vm))
            except DriverError:
                continue  # a host down now runs no VM we could move
            if found:
                name = found
            if active:
                return link, name
        return None, name

    def _active(self, link: HostLink, vm: str, name: str) -> bool:
        return bool(link.call(f"read VM {name}", lambda c: c.lookupByUUIDString(vm).isActive()))

    def _defined(self, link: HostLink, vm: str) -> bool:
        try:
            return bool(link.call(f"find VM {vm}", lambda c: _lookup(c, vm)[1]))
        except DriverError:
            return False


def _lookup(conn: Any, vm: str) -> tuple[bool, str]:
    """(running here, name) of a domain; (False, "") if this host does not know it."""
    libvirt = binding()
    try:
        domain = conn.lookupByUUIDString(vm)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False, ""
        raise
    return bool(domain.isActive()), str(domain.name())


def connect(
    connection: Connection | None,
    hosts: Sequence[InventoryHost],
    pool: str,
    settings: Mapping[str, object],
) -> LibvirtDriver:
    return LibvirtDriver(hosts, pool)
