"""What the inventory yields: its pools, each with its driver, connection, policy and hosts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rollup.drivers import Connection, InventoryHost
from rollup.lab import LabSpec
from rollup.model import Policy


@dataclass(frozen=True)
class PoolConfig:
    name: str  # inventory group name
    driver: str
    connection: Connection | None  # None only for a lab pool until the lab is started
    policy: Policy
    hosts: tuple[InventoryHost, ...]
    lab: LabSpec | None
    source: str  # inventory path
    # The driver's own pool variables (DriverInfo.variables), checked, by name.
    settings: Mapping[str, object] = field(default_factory=dict)
    # Apprise URLs the run notifies (rollup_notify): secrets, so outside the policy (which
    # the journal keeps) and out of any repr.
    notify: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Inventory:
    path: str
    pools: tuple[PoolConfig, ...]
