"""A livepatch-only XenServer patch: in place, against evacuating and rebooting every host.

    python bench/livepatch.py [--hosts 8] [--vms-per-host 10]

Two labs from the same seed (so the same pool): XenServer 8, every host up to date, then
a kernel livepatch and a toolstack fix published (`rollup lab publish`). Each is patched
by the real `rollup run --yes` (a child process, over XenAPI), side by side:

* in place: `rollup_reboot: if-required`: what is pending needs neither a reboot nor the
  VMs moved, so rollup applies it where the VMs run and restarts the toolstack;
* evacuate: `rollup_reboot: always`: every host emptied, patched, rebooted, its VMs
  brought back, as a tool that does not read the guidances must.

Printed per run: live migrations, hosts rebooted, how long hosts were out of service
(pool seconds, measured by the lab: disabled until enabled again), the window as rollup's
own plan estimates it for real timings (120 s patch, 300 s reboot, 1 GiB/s migrations),
and the run's wall time at the lab's speed. Ratios are evacuate / in place.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import yaml

from rollup.lab.xapi.running import RunningLab

ROLLUP = str(Path(sysconfig.get_path("scripts")) / "rollup")
SPEED = 50.0
NETWORK = "127.0.180.0"


class OutOfService:
    """Pool seconds hosts spent disabled or down, and their reboots, as the lab saw them
    (it wraps the pool's emit, which every change goes through)."""

    def __init__(self, lab: RunningLab) -> None:
        self.pool = lab.pool
        self.since: dict[str, float] = {}
        self.phase = {ref: host.phase for ref, host in self.pool.hosts.items()}
        self.total = 0.0
        self.reboots = 0
        self._emit = self.pool.emit
        self.pool.emit = self._watch  # type: ignore[method-assign]

    def _watch(self, obj: object, operation: str = "mod") -> None:
        self._emit(obj, operation)
        host = self.pool.hosts.get(getattr(obj, "ref", ""))
        if host is None or obj is not host:
            return
        if host.phase == "going-down" and self.phase[host.ref] != "going-down":
            self.reboots += 1
        self.phase[host.ref] = host.phase
        out = not (host.enabled and host.live)
        if out and host.ref not in self.since:
            self.since[host.ref] = self.pool.now()
        elif not out and host.ref in self.since:
            self.total += self.pool.now() - self.since.pop(host.ref)


def run(label: str, reboot: str, hosts: int, vms: int, workdir: Path) -> dict[str, float]:
    directory = workdir / label
    lab = RunningLab.start(
        hosts=hosts, vms=hosts * vms, seed=7, speed=SPEED, ssh=False, port=0,
        directory=directory / "lab", network=NETWORK, flavor="xenserver", up_to_date=True,
        fill=(0.4, 0.5),
    )  # fmt: skip
    try:
        stream = lab.pool.repository.home
        lab.pool.repository.publish(["kernel"], stream, livepatch=True)
        lab.pool.repository.publish(["xapi"], stream)
        data = lab.inventory()
        group = next(iter(data["all"]["children"].values()))["vars"]
        group.update(rollup_reboot=reboot, rollup_patch_seconds=120, rollup_reboot_seconds=300)
        inventory = directory / "inventory.yml"
        inventory.write_text(yaml.safe_dump(data))
        env = {k: v for k, v in os.environ.items() if k != "ROLLUP_API_PASSWORD"}
        state = directory / "state"
        planned = subprocess.run(
            [ROLLUP, "plan", str(inventory), "--format", "json", "--state-dir", str(state)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        estimate = json.loads(planned.stdout)["estimate"]["total_seconds"]
        watched = OutOfService(lab)
        started = time.monotonic()
        done = subprocess.run(
            [ROLLUP, "run", str(inventory), "--yes", "--no-tui", "--json", "--state-dir",
             str(state)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"{label}: rollup run exited {done.returncode}:\n{done.stderr}")
        finished = json.loads(done.stdout.splitlines()[-1])
        return {
            "migrations": finished["migrations"],
            "reboots": watched.reboots,
            "out_of_service": watched.total,
            "estimate": estimate,
            "wall": wall,
        }
    finally:
        lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--vms-per-host", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollup-bench-livepatch-") as tmp:
        work = Path(tmp)
        in_place = run("in-place", "if-required", args.hosts, args.vms_per_host, work)
        evacuate = run("evacuate", "always", args.hosts, args.vms_per_host, work)
    print(
        f"livepatch + toolstack fix on a {args.hosts}-host XenServer 8 pool,"
        f" {args.vms_per_host} VMs a host (lab x{SPEED:g})"
    )
    print(f"{'':28}{'in place':>12}{'evacuate':>12}{'ratio':>8}")
    rows = (
        ("live migrations", "migrations", "{:.0f}"),
        ("hosts rebooted", "reboots", "{:.0f}"),
        ("host out of service (pool s)", "out_of_service", "{:.0f}"),
        ("estimated window (s)", "estimate", "{:.0f}"),
        ("run wall time (s)", "wall", "{:.1f}"),
    )
    for title, key, fmt in rows:
        a, b = in_place[key], evacuate[key]
        ratio = f"{b / a:.1f}x" if a else "-"
        print(f"{title:28}{fmt.format(a):>12}{fmt.format(b):>12}{ratio:>8}")


if __name__ == "__main__":
    main()
