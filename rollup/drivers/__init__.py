"""The Driver protocol: what the rollout needs from a hypervisor, and nothing more.

Drivers are registered by the name an inventory gives in `rollup_driver`. Every method
is blocking (the rollout calls them from worker threads) and raises only rollup's own
exceptions (`rollup.errors`), carrying the hypervisor's code and parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rollup.model import Host, Lock, Pool

if TYPE_CHECKING:
    from rollup.config.inventory import InventoryHost

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
class HaState:
    """What HA looked like before the run paused it, so it can be restored exactly."""

    enabled: bool
    detail: tuple[tuple[str, str], ...] = ()


class Driver(Protocol):
    name: str

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        """The pool now. What pins VMs is read for the hosts in `blockers_for` only (all
        when None): during a run only the host in its turn needs it, and on a large pool
        asking every host is most of a snapshot's cost."""
        ...

    def disable(self, host: str) -> None: ...

    def enable(self, host: str) -> None: ...

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None: ...

    def shutdown_vm(self, vm: str) -> None: ...

    def start_vm(self, vm: str, host: str) -> None: ...

    def reboot(self, host: str) -> None: ...

    def wait_back(self, host: str, since: str, timeout: float) -> Host:
        """Block until `host` has booted after boot mark `since`, is live and enabled."""
        ...

    def lock(self, lock: Lock, break_stale: bool = False) -> None: ...

    def unlock(self, run_id: str) -> None: ...

    def pause_ha(self) -> HaState: ...

    def restore_ha(self, state: HaState) -> None: ...

    def close(self) -> None: ...


# Built from the pool's API connection (None for drivers without a pool API), its
# inventory hosts and its inventory group's name: drivers that reach each host
# themselves (libvirt) know the pool only from the inventory.
DriverFactory = Callable[[Connection | None, Sequence["InventoryHost"], str], Driver]

_registry: dict[str, DriverFactory] = {}


def register(name: str, factory: DriverFactory) -> None:
    _registry[name] = factory


def names() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(_registry))


def connect(
    name: str,
    connection: Connection | None,
    hosts: Sequence[InventoryHost] = (),
    pool_name: str = "",
) -> Driver:
    """Build the driver an inventory names; raises BadInput for an unknown name."""
    from rollup.errors import BadInput

    _load_builtin()
    try:
        factory = _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise BadInput(f"unknown rollup_driver {name!r}: use one of {known}") from None
    return factory(connection, hosts, pool_name)


def _load_builtin() -> None:
    # Imported lazily so `rollup --help` does not pay for XenAPI's import.
    if "xenapi" not in _registry:
        import rollup.drivers.xenapi.driver
    if "libvirt" not in _registry:
        # Registers itself; libvirt-python is imported only when a libvirt pool connects.
        import rollup.drivers.libvirt.driver  # noqa: F401
