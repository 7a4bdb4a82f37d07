"""The Driver protocol: what the rollout needs from a hypervisor, and nothing more.

Also what a driver tells the rest of rollup about itself (`DriverInfo`: its name, its
inventory variables, its connection defaults, its words), registered by the name an
inventory gives in `rollup_driver` (rollup/drivers/registry.py). Every Driver method is
blocking (the rollout calls them from worker threads) and raises only rollup's own
exceptions (`rollup.errors`), carrying the hypervisor's code and parameters.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rollup.model import Host, Lock, Pending, Pool
from rollup.remote import RemoteHost
from rollup.values import Variable

Progress = Callable[[float], None]  # called with 0.0 .. 1.0 while an operation runs


@dataclass(frozen=True)
class Connection:
    """How to reach a pool: what the inventory says, with the secret kept out of repr."""

    url: str
    user: str
    password: str
    verify_tls: bool = True
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, user={self.user!r}, password='***')"


@dataclass(frozen=True)
class InventoryHost:
    """One host of the pool's inventory group, as the inventory describes it."""

    name: str  # inventory hostname
    pool_host_name: str | None  # rollup_host_name: the host's name in the pool
    address: str | None  # ansible_host
    remote: RemoteHost
    # The driver's own host variables (DriverInfo.variables), checked, by name.
    variables: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class HaState:
    """What HA, and the pool's other automation the run pauses (XenAPI: VMs' auto
    power-on), looked like before the run paused them, so they are restored exactly."""

    enabled: bool
    detail: tuple[tuple[str, str], ...] = ()
    # What else the driver set for the run, named ("Ceph's noout flag"): the run says
    # it, and says so again when it is restored.
    paused: str = ""


# The code of restore_ha's DriverError when HA cannot come back until the pool's hosts
# run the same versions (xapi's rolling-upgrade mode): the run says it and resumes it later.
HA_WAITS_FOR_VERSIONS = "HOSTS_RUN_DIFFERENT_VERSIONS"

Say = Callable[[str], None]  # one line of what a long call is doing or waiting on now


def _quiet(text: str) -> None:
    return None


@dataclass(frozen=True)
class Follow:
    """How a driver follows a call that lasts minutes (an install): how long it may take
    in all, waits for a busy service included, and where it says what it is doing or
    waiting on ("yum update running for 2m 10s"), a line every so often."""

    timeout: float = 7200.0
    say: Say = _quiet


UNFOLLOWED = Follow()  # the default: two hours, nothing said


@dataclass(frozen=True)
class PoolUpdates:
    """What a pool's hosts have pending, by host id, as their own tools say it. A host
    the driver could not ask, or any host of a driver that cannot tell, is absent."""

    hosts: Mapping[str, Pending] = field(default_factory=dict)
    hash: str = ""  # XenServer: the updateinfo hash these lists belong to


def with_updates(pool: Pool, updates: PoolUpdates) -> Pool:
    """The snapshot with each host's pending updates in it."""
    hosts = tuple(
        dataclasses.replace(host, pending=updates.hosts[host.id])
        if host.id in updates.hosts
        else host
        for host in pool.hosts
    )
    return dataclasses.replace(pool, hosts=hosts, updates_hash=updates.hash or pool.updates_hash)


class Driver(Protocol):
    name: str

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        """The pool now. What pins VMs is read for the hosts in `blockers_for` only (all
        when None): during a run only the host in its turn needs it, and on a large pool
        asking every host is most of a snapshot's cost."""
        ...

    def pending_updates(self, hosts: Collection[str] | None = None) -> PoolUpdates:
        """What the hosts (ids; None: every live host) have pending. Slow on a real pool
        (each host asks its repositories): called for planning, and per host during a run."""
        ...

    def install_updates(
        self, host: str, packages: Sequence[str] = (), hash_: str = "", follow: Follow = UNFOLLOWED
    ) -> tuple[str, ...]:
        """Install what is pending on `host` the hypervisor's own way (rollup_update: xapi):
        only `packages` (name-version-release) when given, else everything; `hash_` is the
        one the pending list was read with, where the pool has one. It takes minutes:
        `follow` bounds it and hears how it goes. What must follow (a reboot, a toolstack
        restart) shows in the host's pending_guidances. Returns the install's output
        lines."""
        ...

    def restart_toolstack(self, host: str, timeout: float) -> Host:
        """Restart the host's management toolstack and wait until it is back."""
        ...

    def installer_problem(self, host: str, url: str) -> str:
        """Why `host` cannot be upgraded by the network installer at `url`; "" if it can."""
        ...

    def prepare_upgrade(self, host: str, url: str) -> None:
        """Set `host` to boot the network installer at `url` at its next reboot."""
        ...

    def disable(self, host: str) -> None: ...

    def enable(self, host: str) -> None: ...

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None: ...

    def shutdown_vm(self, vm: str) -> None: ...

    def start_vm(self, vm: str, host: str) -> None: ...

    def restart_vm(self, vm: str) -> None:
        """Reboot a running VM where it runs (downtime: only when the policy asks)."""
        ...

    def reboot(self, host: str) -> None: ...

    def wait_back(self, host: str, since: str, timeout: float) -> Host:
        """Block until `host` has booted after boot mark `since`, is live and enabled."""
        ...

    def lock(self, lock: Lock, break_stale: bool = False) -> None: ...

    def refresh_lock(self, lock: Lock) -> None:
        """Extend our lock's expiry; LockHeld if it is no longer ours."""
        ...

    def unlock(self, run_id: str) -> None: ...

    def pause_ha(self) -> HaState: ...

    def restore_ha(self, state: HaState) -> None: ...

    def close(self) -> None: ...


# Built from the pool's API connection (None for drivers without a pool API), its
# inventory hosts, its inventory group's name and the driver's own pool variables
# (checked, by name): drivers that reach each host themselves (libvirt) know the pool
# only from the inventory.
DriverFactory = Callable[
    [Connection | None, Sequence[InventoryHost], str, Mapping[str, object]], Driver
]


def imported_factory(module: str) -> DriverFactory:
    """A factory that imports `module` (the driver, and with it its hypervisor's SDK) only
    when a pool connects, and calls its `connect`."""

    def connect(
        connection: Connection | None,
        hosts: Sequence[InventoryHost],
        pool: str,
        settings: Mapping[str, object],
    ) -> Driver:
        factory: DriverFactory = importlib.import_module(module).connect
        return factory(connection, hosts, pool, settings)

    return connect


@dataclass(frozen=True)
class Terms:
    """How rollup speaks of what only the driver knows, in checks, hints and errors."""

    keeper: str  # who keeps the pool's rules: "xapi", "libvirt"
    not_live: str  # why a host is not live: "xapi has no heartbeat from it"
    enable_host: str  # how a person enables a host again: "xe host-enable"
    # How a person starts a VM on a host: "xe vm-start vm=<vm> on=<host>" (<id> its id).
    start_vm: str = "start <vm> on <host>"
    # For a driver without a pool API: how its hosts are reached instead.
    hosts_reached: str = ""
    # What keeps VMs off older hosts while versions are mixed, if the pool has it.
    rolling_upgrade: str = ""


@dataclass(frozen=True)
class DriverInfo:
    """What a driver registers: everything the core may know of it, without importing it.

    `connect` builds the driver; the driver's heavy imports (its hypervisor SDK) happen
    there, so `rollup --help` and `rollup plan --help` never pay for them.
    """

    name: str  # the inventory's rollup_driver
    summary: str  # one line for --help and errors: "XenServer / XCP-ng (XenAPI)"
    connect: DriverFactory
    terms: Terms
    # Reached through one pool API (rollup_api_url/user/password), or host by host.
    pool_api: bool = True
    default_user: str = "root"  # rollup_api_user when neither inventory nor env says
    # Inventory variables only this driver reads (checked by the inventory like rollup's
    # own; the driver gets them as InventoryHost.variables and its factory's settings).
    variables: tuple[Variable, ...] = ()
    # How it can patch hosts (rollup_update), its default first: "xapi" is the
    # hypervisor's own way (Driver.install_updates), "playbook" Ansible over SSH.
    update_methods: tuple[str, ...] = ("playbook",)
    # The shell command that downloads a host's pending updates into its package cache
    # and installs nothing, run over SSH on every host before the first evacuation
    # (rollup_prestage); None: its hosts cannot be pre-staged.
    prestage_command: str | None = None
    # The playbook rollup ships that patches its hosts when the inventory names none
    # (rollup_playbook), one of rollup/bundled.py's.
    playbook: str = "xcp-ng-update.yml"
