"""The XenServer / XCP-ng driver, through the official XenAPI client.

This module is what rollup knows of the driver before a pool connects; the driver
itself (rollup/drivers/xenapi/driver.py) imports XenAPI only then.
"""

from __future__ import annotations

from rollup.drivers import DriverInfo, Terms, imported_factory

INFO = DriverInfo(
    name="xenapi",
    summary="XenServer / XCP-ng through XenAPI",
    connect=imported_factory("rollup.drivers.xenapi.driver"),
    terms=Terms(
        keeper="xapi",
        not_live="xapi has no heartbeat from it",
        enable_host="xe host-enable",
        rolling_upgrade="xapi's rolling upgrade mode",
    ),
)
