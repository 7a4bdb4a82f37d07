"""The libvirt/KVM driver: a pool is an inventory group of hosts, each its own libvirtd.

This module is what rollup knows of the driver before a pool connects; the driver
itself (rollup/drivers/libvirt/driver.py) imports libvirt-python only then.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from rollup.drivers import DriverInfo, Terms, imported_factory
from rollup.errors import Problem
from rollup.values import Context, Variable, boolean, shown


def _uri(value: object, context: Context) -> str:
    example = "qemu+ssh://root@kvm1.example.org/system"
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme.split("+")[0] == "qemu" and parts.path in ("/system", "/session"):
            return value.strip()
    raise Problem(f"must be a QEMU libvirt URI, got {shown(value, context)}", example)


INFO = DriverInfo(
    name="libvirt",
    summary="libvirt/KVM hosts, each reached through its own libvirtd",
    connect=imported_factory("rollup.drivers.libvirt.driver"),
    terms=Terms(
        keeper="libvirt",
        not_live="its libvirtd does not answer",
        enable_host="rm /run/rollup/disabled on it",
        start_vm="virsh -c qemu+ssh://root@<host>/system start <vm>",
        hosts_reached="each host is reached by its rollup_libvirt_uri",
    ),
    pool_api=False,
    variables=(
        # How to reach each host's libvirtd (default qemu+ssh://<ansible_host>/system),
        # and whether VMs with local disks may move by copying them (block migration).
        Variable("rollup_libvirt_uri", "host", _uri),
        Variable("rollup_libvirt_block_migration", "host", boolean),
    ),
)
