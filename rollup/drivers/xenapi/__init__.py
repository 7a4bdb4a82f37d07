"""The XenServer / XCP-ng driver, through the official XenAPI client.

This module is what rollup knows of the driver before a pool connects; the driver
itself (rollup/drivers/xenapi/driver.py) imports XenAPI only then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rollup.drivers import Connection, Driver, DriverInfo, InventoryHost, Terms


def _connect(
    connection: Connection | None,
    hosts: Sequence[InventoryHost],
    pool: str,
    settings: Mapping[str, object],
) -> Driver:
    from rollup.drivers.xenapi.driver import connect

    return connect(connection, hosts, pool, settings)


INFO = DriverInfo(
    name="xenapi",
    summary="XenServer / XCP-ng through XenAPI",
    connect=_connect,
    terms=Terms(
        keeper="xapi",
        not_live="xapi has no heartbeat from it",
        enable_host="xe host-enable",
        rolling_upgrade="xapi's rolling upgrade mode",
    ),
)
