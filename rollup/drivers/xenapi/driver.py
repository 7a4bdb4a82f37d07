"""The XenServer / XCP-ng driver, through the official XenAPI client (`pip install XenAPI`).

What each call does to the pool follows /work/shared/XAPI.md; the pieces live next door:
session.py (connection, retries, error translation), view.py (the records kept
current by events), records.py (records → model), tasks.py (waiting on tasks),
boot.py (waiting for a rebooted host), lock.py (where the run lock is kept; the
lock itself is rollup/drivers/run_lock.py), failures.py (readable error codes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollup.drivers import Connection, InventoryHost, Progress
from rollup.drivers.run_lock import HoldsRunLock, RunLock
from rollup.drivers.xenapi.boot import wait_back
from rollup.drivers.xenapi.failures import describe
from rollup.drivers.xenapi.ha import HaControl
from rollup.drivers.xenapi.lock import PoolConfigStore
from rollup.drivers.xenapi.patching import Patching
from rollup.drivers.xenapi.records import PoolRecords, parse_pool, sr_refs
from rollup.drivers.xenapi.session import Session, Timing
from rollup.drivers.xenapi.tasks import destroy, failure_of, watch
from rollup.drivers.xenapi.view import PoolView
from rollup.errors import BadInput, DriverError, MigrationRefused, TransientDriverError
from rollup.model import Host, Pool

log = logging.getLogger("rollup.drivers.xenapi")

__all__ = ["Timing", "XenApiDriver"]


class XenApiDriver(HoldsRunLock, Patching, HaControl):
    """A pool reached through its master's XenAPI. Logs in when built."""

    name = "xenapi"

    def __init__(
        self,
        connection: Connection,
        timing: Timing | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        self.timing = timing or Timing()
        settings = settings or {}
        # Extra yum repositories for XCP-ng's updater plugin (rollup_update_repos).
        repos = settings.get("rollup_update_repos", ())
        self.update_repos = tuple(str(r) for r in repos) if isinstance(repos, tuple) else ()
        self.sync_first = settings.get("rollup_sync") is True
        self.api = Session(connection, self.timing)
        self.api.connect()
        self._lock = RunLock(PoolConfigStore(self.api))
        self._view = PoolView(self.api)
        self._executor: ThreadPoolExecutor | None = None
        asked = settings.get("rollup_migration_network")
        # Which network live migrations go over: the inventory's, else Xen Orchestra's
        # choice for the pool, else xapi's default. Looked up now: a wrong name is bad
        # input before anything moves.
        self.migration_network = migration_network(self.api, str(asked) if asked else None)

    # -- reading ---------------------------------------------------------------------

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        return parse_pool(self.records(blockers=True, blockers_for=blockers_for))

    def records(
        self, blockers: bool = True, blockers_for: Collection[str] | None = None
    ) -> PoolRecords:
        """Everything a snapshot needs: the event-kept view, and what pins VMs where asked."""
        call = self.api.call
        current = self._view.read()
        hosts, metrics = current["host"], current["host_metrics"]
        evacuation: dict[str, Mapping[str, list[str]]] = {}
        if blockers:
            # Nothing runs on a host that is down (and xapi would refuse to plan for it).
            live = [
                (ref, host)
                for ref, host in hosts.items()
                if metrics.get(host.get("metrics"), {}).get("live", False)
                and (blockers_for is None or host.get("uuid") in blockers_for)
            ]
            # xapi plans each host's evacuation in turn: ask several hosts at once.
            evacuation = dict(self._readers().map(self._evacuation_errors, live))
        return PoolRecords(
            pool=current["pool"],
            hosts=hosts,
            host_metrics=metrics,
            vms=current["VM"],
            evacuation_errors=evacuation,
            sr_names={
                sr: call("read an SR's name", "SR.get_name_label", sr) for sr in sr_refs(evacuation)
            },
        )

    def _evacuation_errors(
        self, item: tuple[str, Mapping[str, Any]]
    ) -> tuple[str, Mapping[str, list[str]]]:
        ref, host = item
        errors = self.api.call(
            f"ask host {host['name_label']} which VMs prevent its evacuation",
            "host.get_vms_which_prevent_evacuation",
            ref,
        )
        return ref, errors

    def _readers(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.timing.parallel_reads, thread_name_prefix="rollup-xenapi"
            )
        return self._executor

    # -- hosts -----------------------------------------------------------------------

    def disable(self, host: str) -> None:
        ref, name = self._host(host)
        self.api.call(f"disable host {name}", "host.disable", ref)
        log.debug("disabled host %s", name)

    def enable(self, host: str) -> None:
        ref, name = self._host(host)
        # Right after a reboot xapi answers HOST_STILL_BOOTING for a while: retried.
        self.api.call(
            f"enable host {name}",
            "host.enable",
            ref,
            retry_seconds=self.timing.enable_retry_seconds,
        )
        log.debug("enabled host %s", name)

    def reboot(self, host: str) -> None:
        ref, name = self._host(host)
        try:
            self.api.call(f"reboot host {name}", "host.reboot", ref, idempotent=False)
        except DriverError as exc:
            if exc.code == "HOST_NOT_DISABLED":
                raise DriverError(
                    f"could not reboot host {name}: it is still enabled (HOST_NOT_DISABLED); "
                    "disable and evacuate it first",
                    exc.code,
                    exc.params,
                ) from None
            raise
        log.debug("host %s is rebooting", name)

    def wait_back(self, host: str, since: str, timeout: float) -> Host:
        """Block until `host` booted after boot mark `since`, is live and enabled.

        Wakes on host and host_metrics events rather than polling; survives the API
        dropping while the master reboots (see boot.py).
        """
        return self._wait_stamp(host, since, timeout, "boot_time")

    def _wait_stamp(self, host: str, since: str, timeout: float, mark: str) -> Host:
        """Wait until the host's other_config `mark` is newer than `since` (boot.py)."""
        return wait_back(
            self.api,
            host,
            since,
            timeout,
            find=lambda uuid: self._host(uuid, retry_seconds=0),
            read_host=lambda uuid: parse_pool(self.records(blockers=False)).host(uuid),
            mark=mark,
        )

    # -- VMs -------------------------------------------------------------------------

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None:
        vm_ref, vm_name = self._vm(vm)
        host_ref, host_name = self._host(dest)
        names = {vm_ref: vm_name, host_ref: host_name}
        what = f"migrate VM {vm_name} to {host_name}"
        try:
            options = {"live": "true"}
            if self.migration_network:
                options["network"] = self.migration_network
            task = self.api.call(
                what, "Async.VM.pool_migrate", vm_ref, host_ref, options, idempotent=False
            )
        except TransientDriverError:
            raise
        except DriverError as exc:
            raise self._refused(vm, dest, vm_name, host_name, exc.code, exc.params, names) from None
        try:
            record = watch(self.api, task, what, progress)
        finally:
            destroy(self.api, task)
        assert record is not None
        if record["status"] != "success":
            code, params = failure_of(record)
            raise self._refused(vm, dest, vm_name, host_name, code, params, names)
        log.debug("migrated VM %s to %s", vm_name, host_name)

    def shutdown_vm(self, vm: str) -> None:
        """Clean shutdown, then a hard one if the guest has not stopped in time."""
        ref, name = self._vm(vm)
        if self.api.call(f"read VM {name}", "VM.get_power_state", ref) == "Halted":
            return
        what = f"shut down VM {name}"
        try:
            task = self.api.call(what, "Async.VM.clean_shutdown", ref)
        except TransientDriverError:
            raise
        except DriverError as exc:
            log.info("%s: clean shutdown refused (%s); forcing it", what, exc.code)
        else:
            try:
                deadline = time.monotonic() + self.timing.shutdown_timeout
                record = watch(self.api, task, what, deadline=deadline)
                if record is None:
                    log.info("%s: still running after clean shutdown; forcing it", what)
                    self.api.call_once("task.cancel", task)
                elif record["status"] == "success":
                    return
            finally:
                destroy(self.api, task)
        if self.api.call(f"read VM {name}", "VM.get_power_state", ref) != "Halted":
            self.api.call(f"force VM {name} off", "VM.hard_shutdown", ref)

    def restart_vm(self, vm: str) -> None:
        """A clean reboot, then a hard one if the guest refuses: its updates asked for it."""
        ref, name = self._vm(vm)
        for method in ("Async.VM.clean_reboot", "Async.VM.hard_reboot"):
            task = self.api.call(f"restart VM {name}", method, ref, idempotent=False)
            try:
                record = watch(self.api, task, f"restart VM {name}")
            finally:
                destroy(self.api, task)
            if record is not None and record["status"] == "success":
                return
            log.info("restart VM %s: %s failed (%s)", name, method, failure_of(record or {}))
        code, params = failure_of(record or {})
        raise DriverError(f"could not restart VM {name}: {describe(code, params)}", code, params)

    def start_vm(self, vm: str, host: str) -> None:
        vm_ref, vm_name = self._vm(vm)
        host_ref, host_name = self._host(host)
        what = f"start VM {vm_name} on {host_name}"
        task = self.api.call(what, "Async.VM.start_on", vm_ref, host_ref, False, False)
        try:
            record = watch(self.api, task, what)
        finally:
            destroy(self.api, task)
        assert record is not None
        if record["status"] != "success":
            code, params = failure_of(record)
            names = {vm_ref: vm_name, host_ref: host_name}
            message = describe(code, params, lambda ref: names.get(ref, ref))
            raise DriverError(f"could not {what}: {message}", code, params)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.api.close()

    # -- plumbing --------------------------------------------------------------------

    def _host(self, host: str, retry_seconds: float | None = None) -> tuple[str, str]:
        ref = self.api.call(
            f"find host {host}", "host.get_by_uuid", host, retry_seconds=retry_seconds
        )
        name = self.api.call(
            f"read host {host}", "host.get_name_label", ref, retry_seconds=retry_seconds
        )
        return ref, str(name)

    def _vm(self, vm: str) -> tuple[str, str]:
        ref = self.api.call(f"find VM {vm}", "VM.get_by_uuid", vm)
        return ref, str(self.api.call(f"read VM {vm}", "VM.get_name_label", ref))

    def _refused(
        self,
        vm: str,
        dest: str,
        vm_name: str,
        host_name: str,
        code: str,
        params: tuple[str, ...],
        names: Mapping[str, str],
    ) -> MigrationRefused:
        detail = describe(code, params, lambda ref: names.get(ref) or self._name_of(ref))
        return MigrationRefused(
            vm, dest, f"VM {vm_name} cannot move to {host_name}: {detail}", code, params
        )

    def _name_of(self, ref: str) -> str:
        """A ref in an error's params as a name, whatever class it belongs to."""
        if not ref.startswith("OpaqueRef:"):
            return ref
        for cls in ("SR", "host", "VM"):
            try:
                return str(self.api.call_once(f"{cls}.get_name_label", ref))
            except Exception:
                continue
        return ref


XO_MIGRATION_NETWORK = "xo:migrationNetwork"  # pool.other_config: a network's uuid


def migration_network(api: Session, asked: str | None) -> str:
    """The ref of the network live migrations use; "" for xapi's own choice."""
    if asked is None:
        pool = api.call("find the pool", "pool.get_all")[0]
        chosen = api.call("read the pool", "pool.get_other_config", pool).get(XO_MIGRATION_NETWORK)
        if not chosen:
            return ""
        try:
            return str(api.call("find the migration network", "network.get_by_uuid", chosen))
        except DriverError:
            log.warning(
                "the pool's %s names no network (%s): xapi chooses", XO_MIGRATION_NETWORK, chosen
            )
            return ""
    networks = api.call("list the pool's networks", "network.get_all_records")
    found = [ref for ref, rec in networks.items() if asked in (rec["uuid"], rec["name_label"])]
    if len(found) != 1:
        names = ", ".join(sorted(rec["name_label"] for rec in networks.values()))
        problem = "names no network" if not found else "names several networks"
        raise BadInput(
            f"rollup_migration_network {asked!r} {problem} of the pool: use one of {names}"
            " (a name or a uuid)"
        )
    return str(found[0])


def connect(
    connection: Connection | None,
    hosts: Sequence[InventoryHost],
    pool: str,
    settings: Mapping[str, object],
) -> XenApiDriver:
    """The DriverFactory of rollup/drivers/xenapi/__init__.py: one session to the master."""
    if connection is None:
        raise BadInput("a xenapi pool needs rollup_api_url: set it in the pool group's vars")
    return XenApiDriver(connection, settings=settings)
