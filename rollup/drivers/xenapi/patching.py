"""The XenAPI driver's updates: what hosts have pending, installing it, what follows.

A part of XenApiDriver (rollup/drivers/xenapi/driver.py), kept apart so the driver's
module stays readable: reading pending updates per flavor (updates.py), installing them
and preparing a major upgrade (install.py), restarting a toolstack.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollup.drivers import UNFOLLOWED, Follow, PoolUpdates
from rollup.drivers.xenapi import install, updates
from rollup.drivers.xenapi.records import flavor
from rollup.drivers.xenapi.session import Session, Timing
from rollup.drivers.xenapi.view import PoolView
from rollup.errors import DriverError
from rollup.model import Host, Pending


class Patching:
    """Mixed into XenApiDriver, whose attributes and helpers these are."""

    api: Session
    timing: Timing
    update_repos: tuple[str, ...]
    sync_first: bool
    _view: PoolView

    def _readers(self) -> ThreadPoolExecutor: ...

    def _host(self, host: str, retry_seconds: float | None = None) -> tuple[str, str]: ...

    def _wait_stamp(self, host: str, since: str, timeout: float, mark: str) -> Host: ...

    def pending_updates(self, hosts: Collection[str] | None = None) -> PoolUpdates:
        current = self._view.read()
        (master_ref,) = (rec["master"] for rec in current["pool"].values())
        kind = flavor(current["host"].get(master_ref, {}))
        metrics = current["host_metrics"]
        asked = {
            ref: rec
            for ref, rec in current["host"].items()
            if metrics.get(rec.get("metrics"), {}).get("live", False)
            and (hosts is None or rec.get("uuid") in hosts)
        }
        if kind == "xenserver":
            if self.sync_first and hosts is None:
                # When planning (every host asked), once: a sync mid-run (a resume reads
                # one host at a time) would change the hash under the plan.
                self.sync_first = False
                (pool_ref,) = current["pool"]
                install.sync_updates(self.api, pool_ref, self.timing.busy_seconds)
            data = updates.read_updates(self.api, self.timing.busy_seconds)
            return updates.parse_updates(data, {ref: rec["uuid"] for ref, rec in asked.items()})
        if kind != "xcp-ng":
            return PoolUpdates()

        def ask(item: tuple[str, Mapping[str, Any]]) -> tuple[str, Pending]:
            ref, rec = item
            timing = self.timing
            pending = updates.check_update(
                self.api, ref, rec["name_label"], self.update_repos, timing.busy_seconds,
                timing.busy_delay,
            )  # fmt: skip
            return rec["uuid"], pending

        return PoolUpdates(hosts=dict(self._readers().map(ask, asked.items())))

    def install_updates(
        self, host: str, packages: Sequence[str] = (), hash_: str = "", follow: Follow = UNFOLLOWED
    ) -> tuple[str, ...]:
        ref, name = self._host(host)
        kind = flavor(self.api.call(f"read host {name}", "host.get_record", ref))
        delay = self.timing.busy_delay
        if kind == "xcp-ng":
            done = install.xcp_ng_update(
                self.api, ref, name, packages, self.update_repos, follow, delay
            )
        elif kind == "xenserver":
            done = install.xenserver_apply(self.api, ref, name, hash_, follow, delay)
        else:
            raise DriverError(
                f"host {name} has no update service rollup can drive (neither XCP-ng's"
                " updater.py nor XenServer 8's apply_updates): set rollup_update: playbook",
                "NO_UPDATE_SERVICE",
            )
        return done.output

    def installer_problem(self, host: str, url: str) -> str:
        ref, name = self._host(host)
        return install.installer_problem(self.api, ref, name, url)

    def prepare_upgrade(self, host: str, url: str) -> None:
        ref, name = self._host(host)
        install.prepare_upgrade(self.api, ref, name, url)

    def restart_toolstack(self, host: str, timeout: float) -> Host:
        ref, name = self._host(host)
        record = self.api.call(f"read host {name}", "host.get_record", ref)
        before = str(record.get("other_config", {}).get("agent_start_time", ""))
        self.api.call(f"restart the toolstack of host {name}", "host.restart_agent", ref,
                      idempotent=False)  # fmt: skip
        return self._wait_stamp(host, before, timeout, "agent_start_time")
