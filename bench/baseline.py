"""The established approach, as Xen Orchestra's Rolling Pool Update runs it (XAPI.md).

Master first, then the others, strictly one host at a time; per host: VMs that prevent
evacuation are shut down (XO's option), assert_can_evacuate, disable, `host.evacuate`
(xapi's own placement), patch, reboot, wait until enabled, live and with a newer
agent_start_time, restart the VMs it shut down; at the end every VM not on its original
host is migrated back to it.

Two forms of the same thing:

* `simulate(layout)`: counts only. Runs xapi's placement (`rollup.lab.xapi.placement.
  evacuation_plan`, the very code behind the lab's `host.evacuate`) host by host on a
  LabPool whose moves land instantly. Fast enough for the 64-host grid.
* `python bench/baseline.py URL PASSWORD LAB_DIR`: the real thing, a XenAPI client
  driving a lab pool over HTTP with `Async.host.evacuate`, as XO does. bench/window.py
  runs it as a child process, as it runs `rollup run`, and checks that it moved exactly
  what `simulate` predicted.

The patch: XO installs updates through the host's `updater.py` plugin over XenAPI; the
lab has no plugins, so the client writes the target version where the lab's patch
playbook writes it (the host's disk), which takes no pool time. bench/window.py charges
both tools the same fixed patch time instead.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup.lab.layout import Layout
from rollup.lab.machine import INSTALLED_VERSION
from rollup.lab.releases import CURRENT_XCP_NG as TARGET_VERSION
from rollup.lab.xapi.objects import NULL, SimVM
from rollup.lab.xapi.placement import evacuation_plan, pin_error
from rollup.lab.xapi.pool import LabPool


@dataclass(frozen=True)
class Traffic:
    migrations: int
    bytes_moved: int
    unreturned: int  # VMs the final migrate-back could not bring home (memory)


def simulate(layout: Layout) -> Traffic:
    """What XO's rolling pool update migrates on this pool, with xapi's placement."""
    pool = LabPool(layout, speed=1.0)
    try:
        with pool.lock:
            return _simulate(pool)
    finally:
        pool.close()


def _guests(pool: LabPool, host_ref: str) -> list[SimVM]:
    return [vm for vm in pool.resident_vms(host_ref) if not vm.is_control_domain]


def _simulate(pool: LabPool) -> Traffic:
    homes = {
        vm.ref: vm.resident_on
        for vm in pool.vms.values()
        if not vm.is_control_domain and vm.power_state == "Running"
    }
    migrations = moved = 0
    for host in _order(pool):
        stopped = [vm for vm in _guests(pool, host.ref) if pin_error(pool, vm)]
        for vm in stopped:
            vm.power_state, vm.resident_on = "Halted", NULL
        host.enabled = False
        moves, errors = evacuation_plan(pool, host)
        if errors:
            raise RuntimeError(f"xapi would refuse to evacuate {host.name}: {errors}")
        for vm, dest in moves:
            vm.resident_on = dest.ref
            migrations += 1
            moved += vm.footprint
        host.version = TARGET_VERSION
        host.enabled = True
        for vm in stopped:
            vm.power_state, vm.resident_on = "Running", host.ref
    # Migrate back, skipping VMs already home. A VM whose home is full (other VMs still
    # parked there) is retried after the others have moved: kinder than XO, which fails.
    waiting = [ref for ref, home in homes.items() if pool.vms[ref].resident_on != home]
    while waiting:
        left = []
        for ref in waiting:
            vm = pool.vms[ref]
            if pool.memory_free(homes[ref]) >= vm.footprint:
                vm.resident_on = homes[ref]
                migrations += 1
                moved += vm.footprint
            else:
                left.append(ref)
        if len(left) == len(waiting):
            break
        waiting = left
    return Traffic(migrations, moved, len(waiting))


def _order(pool: LabPool) -> list[Any]:
    """Master first, then the pool's other hosts in their own order (h1..hN)."""
    hosts = list(pool.hosts.values())
    return sorted(hosts, key=lambda h: h.ref != pool.master)


# -- the real run over XenAPI ------------------------------------------------------------


class Client:
    """A XenAPI session that rides out the master's reboot, as XO's client does."""

    def __init__(self, url: str, password: str, retry: float) -> None:
        import XenAPI

        self.url, self.password, self.retry = url, password, retry
        self.session = XenAPI.Session(url)
        self.session.xenapi.login_with_password("root", password, "1.0", "bench-baseline")
        self.xenapi = self.session.xenapi

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(xenapi)`, retried while the API is unreachable (the master rebooting)."""
        while True:
            try:
                return fn(self.xenapi)
            except OSError:
                time.sleep(self.retry)


def wait_task(client: Client, task: str) -> None:
    while True:
        record = client.call(lambda x: x.task.get_record(task))
        if record["status"] == "success":
            client.call(lambda x: x.task.destroy(task))
            return
        if record["status"] != "pending":
            raise RuntimeError(f"task failed: {record['error_info']}")
        time.sleep(client.retry)


def run(url: str, password: str, lab_dir: Path, speed: float) -> dict[str, Any]:
    # Poll every simulated second: XO waits on its event cache, which is at least as
    # quick as that; XenCenter retries every 5 s.
    client = Client(url, password, retry=1.0 / speed)
    x = client.xenapi
    master = x.pool.get_master(x.pool.get_all()[0])
    hosts = x.host.get_all_records()
    order = sorted(hosts, key=lambda ref: (ref != master, int(hosts[ref]["name_label"][1:])))
    vms = x.VM.get_all_records()
    homes = {
        ref: vm["resident_on"]
        for ref, vm in vms.items()
        if vm["power_state"] == "Running" and not vm["is_control_domain"]
    }
    back: dict[str, float] = {}
    for host in order:
        name = hosts[host]["name_label"]
        stopped = list(client.call(lambda x, h=host: x.host.get_vms_which_prevent_evacuation(h)))
        for vm in stopped:
            client.call(lambda x, v=vm: x.VM.clean_shutdown(v))
        client.call(lambda x, h=host: x.host.assert_can_evacuate(h))
        client.call(lambda x, h=host: x.host.disable(h))
        wait_task(client, client.call(lambda x, h=host: x.Async.host.evacuate(h)))
        # The patch: what the lab's playbook does to the host's disk.
        installed = lab_dir / "hosts" / name / "root" / INSTALLED_VERSION
        installed.write_text(TARGET_VERSION + "\n")
        before = float(hosts[host]["other_config"]["agent_start_time"])
        client.call(lambda x, h=host: x.host.reboot(h))
        while True:
            record = _try(client, lambda x, h=host: x.host.get_record(h))
            if record is not None and record["enabled"]:
                metrics = _try(client, lambda x, m=record["metrics"]: x.host_metrics.get_live(m))
                started = float(record["other_config"].get("agent_start_time", 0))
                if metrics and started > before:
                    back[name] = time.time()
                    break
            time.sleep(client.retry)
        for vm in stopped:
            client.call(lambda x, v=vm, h=host: x.VM.start_on(v, h, False, False))
    unreturned = _migrate_back(client, homes)
    return {"back": back, "unreturned": unreturned}


def _try(client: Client, fn: Callable[[Any], Any]) -> Any:
    """One call that may fail while the master reboots (its session is gone too)."""
    try:
        return client.call(fn)
    except Exception:
        return None


def _migrate_back(client: Client, homes: dict[str, str]) -> int:
    """Every VM not home goes home, all at once as xapi tasks (the lab runs 3 at a time
    per source host); a VM refused for memory is retried once the others have landed."""
    where = client.call(lambda x: x.VM.get_all_records())
    waiting = [ref for ref, home in homes.items() if where[ref]["resident_on"] != home]
    while waiting:
        tasks = {
            ref: client.call(
                lambda x, r=ref: x.Async.VM.pool_migrate(r, homes[r], {"live": "true"})
            )
            for ref in waiting
        }
        failed = []
        for ref, task in tasks.items():
            try:
                wait_task(client, task)
            except RuntimeError:
                failed.append(ref)
        if len(failed) == len(waiting):
            break
        waiting = failed
    return len(waiting)


def main() -> None:
    url, password, lab_dir, speed = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    print(json.dumps(run(url, password, lab_dir, float(speed))))


if __name__ == "__main__":
    main()
