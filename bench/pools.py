"""The pools every benchmark measures, and how rollup sees them without a network hop.

A `Case` names a generated lab pool (hosts, VMs per host, fill, seed). `snapshot` turns
a LabPool into the `Pool` rollup's planner takes by feeding the lab's own records to the
XenAPI driver's parser in-process: the same records `XenApiDriver.snapshot()` would
fetch over HTTP, so the planner sees exactly what `rollup run` sees, minus the wire time
(which would only slow the 64-host grid down, not change a single migration).
"""

from __future__ import annotations

from dataclasses import dataclass

from rollup.drivers.xenapi.records import PoolRecords, parse_pool
from rollup.lab.generator import generate
from rollup.lab.layout import Layout
from rollup.lab.releases import CURRENT_XCP_NG as TARGET_VERSION
from rollup.lab.xapi.calls import Api
from rollup.lab.xapi.lifecycle import GOING_DOWN_SECONDS
from rollup.lab.xapi.pool import LabPool
from rollup.model import GiB, Policy, Pool, Strategy

# The patch step as both rollup and the baseline are charged for it in the window
# benchmark (rollup's own estimate default): see bench/window.py for why it is fixed.
PATCH_SECONDS = 120.0
# The lab's reboot as a controller sees it: the host goes down 10 s after host.reboot
# returns and is enabled again `reboot_seconds` (90) later.
LAB_REBOOT_SECONDS = 90.0
REBOOT_SECONDS = GOING_DOWN_SECONDS + LAB_REBOOT_SECONDS


@dataclass(frozen=True)
class Case:
    hosts: int
    vms_per_host: int
    fill: float | None  # the generator's fill ratio pinned to one value; None: its default
    seed: int

    @property
    def vms(self) -> int:
        return self.hosts * self.vms_per_host

    @property
    def label(self) -> str:
        fill = f"{self.fill:.0%}" if self.fill is not None else "50-75%"
        return f"{self.hosts}h x {self.vms_per_host} VMs/h @{fill}"

    def layout(self, address_prefix: str = "127.0.10.") -> Layout:
        return generate(
            self.hosts,
            self.vms,
            self.seed,
            address_prefix=address_prefix,
            fill=(self.fill, self.fill) if self.fill is not None else (0.5, 0.75),
        )


def grid(quick: bool) -> list[Case]:
    """8 to 64 hosts, 10 to 60 VMs a host, 50 to 80 % full, one fixed seed per pool."""
    hosts = (8, 16, 32, 64)
    per_host = (10, 60) if quick else (10, 30, 60)
    fills = (0.5, 0.8) if quick else (0.5, 0.65, 0.8)
    return [
        Case(h, v, f, seed=1000 * h + 10 * v + round(f * 100) % 10)
        for h in hosts
        for v in per_host
        for f in fills
    ]


def snapshot(pool: LabPool) -> Pool:
    """The lab pool as `XenApiDriver.snapshot()` would parse it, without the HTTP."""
    api = Api(pool, "root", "")
    with pool.lock:
        hosts = pool.records_of("host")
        errors = {
            ref: api._vms_preventing_evacuation(ref)  # the call behind the XenAPI method
            for ref in hosts
            if pool.hosts[ref].live
        }
        records = PoolRecords(
            pool=pool.records_of("pool"),
            hosts=hosts,
            host_metrics=pool.records_of("host_metrics"),
            vms=pool.records_of("VM"),
            evacuation_errors=errors,
            sr_names={ref: sr.name for ref, sr in pool.srs.items()},
        )
    return parse_pool(records)


def lab_policy(strategy: Strategy = "return", max_parallel_hosts: int = 1) -> Policy:
    """The lab inventory's policy, with the lab's timing so the estimate is its model."""
    return Policy(
        target_version=TARGET_VERSION,
        strategy=strategy,
        max_parallel_hosts=max_parallel_hosts,
        parallel_migrations=3,  # the lab's migrations_per_host
        unmovable="shutdown-restart",
        reboot="if-required",
        migration_bandwidth=GiB,  # the lab's bandwidth
        patch_seconds=PATCH_SECONDS,
        reboot_seconds=REBOOT_SECONDS,
    )
