"""The Proxmox VE driver: a cluster through its REST API (proxmoxer), its nodes over SSH.

This module is what rollup knows of the driver before a pool connects; the driver
itself (rollup/drivers/proxmox/driver.py) imports proxmoxer only then.
"""

from __future__ import annotations

from rollup.drivers import DriverInfo, Terms, imported_factory
from rollup.values import Variable, boolean, text

INFO = DriverInfo(
    name="proxmox",
    summary="Proxmox VE cluster through its REST API, nodes patched by apt over SSH",
    connect=imported_factory("rollup.drivers.proxmox.driver"),
    terms=Terms(
        keeper="the Proxmox cluster",
        not_live="the cluster sees it offline",
        enable_host="ha-manager crm-command node-maintenance disable <node>",
        start_vm="qm start <id> on <host>",
    ),
    default_user="root@pam",
    update_methods=("playbook",),
    # apt's cache is what dist-upgrade installs from: fetched there, nothing installed.
    prestage_command="apt-get update -q && apt-get -y -q -d dist-upgrade",
    playbook="proxmox-update.yml",
    variables=(
        # A Ceph cluster's `noout` flag for the run, so a rebooting node's OSDs are not
        # marked out and rebalanced (default true; restored at the end as it was).
        Variable("rollup_proxmox_noout", "pool", boolean),
        # For playbooks/proxmox-update.yml: the file whose presence says a node must
        # reboot (default /run/reboot-required, what Debian's packages write).
        Variable("rollup_reboot_required_file", "host", text("/run/reboot-required")),
    ),
)
