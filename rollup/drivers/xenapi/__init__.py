"""The XenServer / XCP-ng driver, through the official XenAPI client.

This module is what rollup knows of the driver before a pool connects; the driver
itself (rollup/drivers/xenapi/driver.py) imports XenAPI only then.
"""

from __future__ import annotations

from rollup.drivers import DriverInfo, Terms, imported_factory
from rollup.values import Variable, boolean, names, text

INFO = DriverInfo(
    name="xenapi",
    summary="XenServer / XCP-ng through XenAPI",
    connect=imported_factory("rollup.drivers.xenapi.driver"),
    terms=Terms(
        keeper="xapi",
        not_live="xapi has no heartbeat from it",
        enable_host="xe host-enable",
        start_vm="xe vm-start vm=<vm> on=<host>",
        rolling_upgrade="xapi's rolling upgrade mode",
    ),
    update_methods=("xapi", "playbook"),
    # XCP-ng's and XenServer's dom0 run yum (3.4: --downloadonly built in); the updater
    # plugin's yum and a playbook's then install from that cache.
    prestage_command="yum -y update --downloadonly",
    variables=(
        # XCP-ng's updater plugin: extra yum repositories to enable (e.g. testing ones).
        Variable("rollup_update_repos", "pool", names),
        # The network live migrations go over (its name or uuid); else Xen Orchestra's
        # choice for the pool (other_config xo:migrationNetwork), else xapi's.
        Variable("rollup_migration_network", "pool", text("Migration")),
        # XenServer 8: pool.sync_updates before the pending updates are first read, so a
        # plan sees what was published since the pool's last sync.
        Variable("rollup_sync", "pool", boolean),
    ),
)
