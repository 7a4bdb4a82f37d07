"""The drivers rollup knows, by the name an inventory gives in `rollup_driver`.

The built-in drivers are found by their package (each one's `__init__` holds only its
DriverInfo, no SDK import); another driver registers its DriverInfo with `register`, and
nothing else in rollup changes: the inventory learns its variables, the checks its words.
"""

from __future__ import annotations

import importlib

from rollup.drivers import Connection, Driver, DriverInfo, InventoryHost, Terms, Variable
from rollup.errors import BadInput

BUILTIN = ("rollup.drivers.xenapi", "rollup.drivers.libvirt", "rollup.drivers.proxmox")

# When a pool names no driver (a plan of an inventory that lost its rollup_driver).
UNKNOWN_TERMS = Terms(
    keeper="the hypervisor",
    not_live="the hypervisor does not see it",
    enable_host="enable it",
)

_registry: dict[str, DriverInfo] = {}
_loaded = False


def register(info: DriverInfo) -> None:
    """Make `info.name` a valid rollup_driver; a later registration of a name replaces it."""
    _registry[info.name] = info


def unregister(name: str) -> None:
    _registry.pop(name, None)


def known() -> tuple[DriverInfo, ...]:
    """Built-in drivers first (xenapi, the default, leads), then others as registered."""
    _load_builtin()
    return tuple(_registry.values())


def names() -> tuple[str, ...]:
    return tuple(info.name for info in known())


def find(name: str) -> DriverInfo | None:
    _load_builtin()
    return _registry.get(name)


def terms(name: str) -> Terms:
    """The words for pool `name`'s driver; neutral ones for a driver nobody registered."""
    info = find(name)
    return info.terms if info is not None else UNKNOWN_TERMS


def variables() -> tuple[Variable, ...]:
    """Every registered driver's own inventory variables."""
    return tuple(variable for info in known() for variable in info.variables)


def connect(
    name: str,
    connection: Connection | None,
    hosts: tuple[InventoryHost, ...] = (),
    pool_name: str = "",
    settings: dict[str, object] | None = None,
) -> Driver:
    """Build the driver an inventory names; BadInput for a name nobody registered."""
    info = find(name)
    if info is None:
        raise BadInput(f"unknown rollup_driver {name!r}: use one of {', '.join(names())}")
    return info.connect(connection, hosts, pool_name, settings or {})


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in BUILTIN:
        info = importlib.import_module(package).INFO
        _registry.setdefault(info.name, info)
