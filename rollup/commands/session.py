"""Opening a pool named by an inventory: its driver, its hosts' remotes, and the lab.

A lab pool (`rollup_lab` in the inventory) is started here, in-process, and lives as
long as the session; its inventory hosts are then reached through the lab's own
connection settings.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup.config.inventory import PoolConfig, match_hosts
from rollup.drivers import Connection, Driver, InventoryHost, registry, with_updates
from rollup.errors import BadInput, PoolUnreachable
from rollup.model import Plan, Pool, UnfinishedRun, version_key
from rollup.plan import planner
from rollup.remote import RemoteHost
from rollup.run.journal import Journal, RunRecord

log = logging.getLogger("rollup")


@dataclass
class PoolSession:
    config: PoolConfig
    driver: Driver
    lab: Any = None  # rollup.lab.xapi.running.RunningLab when the inventory asks for a lab
    # The pool's run that the journal holds unfinished and nothing carries on, read once
    # when the session opened: it holds the pool.
    unfinished: RunRecord | None = None

    def read_pool(self) -> Pool:
        """The pool now, with what each host has pending and, for a major upgrade, whether
        it can boot the installer: what a plan is made from."""
        pool = with_updates(self.driver.snapshot(), self.driver.pending_updates())
        policy = self.config.policy
        if not (policy.installer_url and policy.target_version):
            return pool
        target = version_key(policy.target_version)
        hosts = tuple(
            dataclasses.replace(
                host, installer=self.driver.installer_problem(host.id, policy.installer_url)
            )
            if host.live and version_key(host.version) < target
            else host
            for host in pool.hosts
        )
        return dataclasses.replace(pool, hosts=hosts)

    def plan(self, pool: Pool) -> Plan:
        """The plan for `pool` now, under the inventory's policy and name."""
        made = planner.plan(pool, self.config.policy, time.time(), self._unfinished(pool))
        return dataclasses.replace(made, inventory_name=self.config.name)

    def _unfinished(self, pool: Pool) -> UnfinishedRun | None:
        record = self.unfinished
        if record is None or record.pool_id != pool.id:
            return None
        return UnfinishedRun(record.id, record.state, record.started)

    def remotes(self, pool: Pool) -> dict[str, RemoteHost]:
        """Pool host id → how to reach that host's OS, from the inventory's hosts."""
        if not self.config.hosts:
            return {}
        matched = match_hosts(self.config.hosts, pool.hosts, source=self.config.source)
        by_name = {host.name: host for host in self.config.hosts}
        return {host_id: by_name[name].remote for name, host_id in matched.items()}

    def close(self) -> None:
        try:
            self.driver.close()
        finally:
            if self.lab is not None:
                self.lab.stop()


def open_session(
    config: PoolConfig, state_dir: Path, wait_seconds: float = 0.0, restore_lab: bool = False
) -> PoolSession:
    """`restore_lab`: an in-process lab comes back as the last one left it (`rollup
    resume`), not fresh (a new run)."""
    lab = None
    # A lab's pool is the one its paused run left while that run holds it: a plan
    # shows it, and a fresh lab would lose what the run's resume needs.
    unfinished = _unfinished_run(state_dir, config.name)
    restore_lab = restore_lab or unfinished is not None
    if config.lab is not None:
        from rollup.lab.xapi.running import RunningLab

        lab_dir = state_dir / "labs" / config.name
        lab = RunningLab.start_for(config.lab, lab_dir, restore=restore_lab)
        config = _with_lab(config, lab)
    info = registry.find(config.driver)
    if config.connection is None and info is not None and info.pool_api:
        raise BadInput(
            f"{config.source}: pool {config.name} has no rollup_api_url: set it in the group's vars"
        )
    try:
        driver = _connect(config, wait_seconds)
    except BaseException:
        if lab is not None:
            lab.stop()
        raise
    return PoolSession(config=config, driver=driver, lab=lab, unfinished=unfinished)


def _unfinished_run(journal_dir: Path, pool_name: str) -> RunRecord | None:
    """The pool's unfinished run that no live process carries on (one that is carried
    on holds the pool's own lock, which the lock check reads)."""
    from rollup.run.left_behind import carried_on

    journal = Journal(journal_dir)
    try:
        record = journal.latest_unfinished(pool_name)
    finally:
        journal.close()
    return None if record is None or carried_on(record) else record


def _connect(config: PoolConfig, wait_seconds: float) -> Driver:
    """Connect; with `wait_seconds`, ride out a pool API that is down for a while."""
    deadline = time.monotonic() + wait_seconds
    delay = 1.0
    while True:
        try:
            return registry.connect(
                config.driver, config.connection, config.hosts, config.name, dict(config.settings)
            )
        except PoolUnreachable as error:
            if not error.transient or time.monotonic() + delay > deadline:
                raise
            log.warning("%s; retrying in %.0fs (the master may be rebooting)", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _with_lab(config: PoolConfig, lab: Any) -> PoolConfig:
    """The inventory's lab hosts, connected the way the running lab says."""
    remotes: dict[str, RemoteHost] = lab.remote_hosts()
    hosts: list[InventoryHost] = []
    for host in config.hosts:
        remote = remotes.get(host.pool_host_name or host.name)
        if remote is None:
            known = ", ".join(sorted(remotes))
            raise BadInput(
                f"{config.source}: host {host.name} is not in the lab (it has {known}):"
                " name inventory hosts after the lab's hosts or remove it"
            )
        hosts.append(dataclasses.replace(host, remote=remote, address=remote.address))
    if not hosts:
        hosts = [
            InventoryHost(name=name, pool_host_name=name, address=remote.address, remote=remote)
            for name, remote in remotes.items()
        ]
    connection = Connection(
        url=lab.url, user=lab.user, password=lab.password, ca_file=getattr(lab, "ca_file", None)
    )
    policy = config.policy
    if lab.upgrades and policy.update == "xapi" and policy.installer_url is None:
        # A lab of the older release: its major upgrade is from the installer it serves.
        policy = dataclasses.replace(
            policy,
            installer_url=lab.installer_url,
            target_version=policy.target_version or lab.current_release,
        )
    return dataclasses.replace(config, hosts=tuple(hosts), connection=connection, policy=policy)
