"""Maintenance window: full lab runs of `rollup run` and of the XO-like baseline.

    python bench/window.py [--quick]

For each pool, two fresh labs from the same seed (so the same pool): one upgraded by the
real `rollup run --yes` (a child process, over XenAPI and real sshd + Ansible, as a
pipeline runs it), one by bench/baseline.py (a child process, a XenAPI client doing what
Xen Orchestra's rolling pool update does). The lab records both (bench/recorder.py).

Figures are in pool seconds, measured by the lab from the first host disabled to the
last VM landed or host enabled: the window the pool lives through, without either
controller's start-up. The lab runs SPEED times faster than real time, but a controller's
own think time (API round trips, snapshots, SSH, Ansible) does not shrink with it: one
second of it shows up as SPEED pool seconds. So the window is split by what the lab was
doing (bench/recorder.py): *busy* (a migration in flight or a host rebooting) counts in
pool seconds, *idle* (the pool waiting for its controller) is turned back into the real
seconds it took. Both raw windows are printed too.

The patch step: rollup runs the lab's real patch playbook over SSH with Ansible; the
baseline writes the same file the playbook writes (XO patches through a XenAPI host
plugin, which the lab lacks). Neither says what a real `yum update` costs, so the time
rollup spent in its `patching` state (from its journal) is taken out of its idle time,
and both windows are charged the same fixed PATCH_SECONDS (120 s) per host.

The lower bound: rollup's plan timed with the lab's own model (1 GiB/s per migration, 3
at once per source host, 100 s from host.reboot to enabled, the same fixed patch), batch
after batch: the reboots nobody can avoid plus the fewest seconds its migrations can take.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pools import PATCH_SECONDS, Case, lab_policy, snapshot
from recorder import Recorder

from rollup import planner
from rollup.journal import Journal
from rollup.lab.running import PLAYBOOKS, TARGET_VERSION, RunningLab
from rollup.model import Strategy

BENCH = Path(__file__).resolve().parent
SPEED = 200.0  # the rollout tests' speed: a 100 s reboot takes half a second
# Each lab gets its own loopback /24 so an sshd left by one can never answer for the next.
_networks = itertools.count(140)


@dataclass
class RunResult:
    tool: str
    window: float  # pool seconds, first host disabled → last change, as recorded
    busy: float  # pool seconds of it with a migration in flight or a host rebooting
    patch: float  # wall seconds the controller spent patching (taken out, see above)
    hosts: int
    speed: float
    migrations: int  # counted by the lab as they landed
    bytes_moved: int
    wall: float  # seconds the controller process ran
    back_wall: dict[str, float] = field(default_factory=dict)  # host → enabled+live (wall)
    next_action_wall: dict[str, float] = field(default_factory=dict)  # host → controller's
    patch_wall: list[float] = field(default_factory=list)  # rollup: each host's patch step

    @property
    def think(self) -> float:
        """Real seconds the pool waited on its controller, its own patch step aside."""
        return max(0.0, (self.window - self.busy) / self.speed - self.patch)

    @property
    def charged(self) -> float:
        """The window a real pool would live: the lab's work in pool seconds, the
        controller's think time in real seconds, the patch at the same fixed cost."""
        return self.busy + self.think + self.hosts * PATCH_SECONDS


@dataclass
class PoolResult:
    case: Case
    strategy: Strategy
    rollup: RunResult
    baseline: RunResult
    lower_bound: float
    planned_migrations: int
    bare_ansible_wall: list[float] = field(default_factory=list)


def _start_lab(case: Case, directory: Path, ssh: bool) -> RunningLab:
    return RunningLab.start(
        hosts=case.hosts,
        vms=case.vms,
        seed=case.seed,
        speed=SPEED,
        ssh=ssh,
        port=0,
        directory=directory,
        network=f"127.0.{next(_networks)}.0",
    )


def _env() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("ROLLUP_API_PASSWORD", None)
    return environment


def run_rollup(
    case: Case, strategy: Strategy, workdir: Path, bare_ansible: int = 0
) -> tuple[RunResult, float, int, list[float]]:
    """One `rollup run` on a fresh lab; also the lower bound from its plan, and (when
    asked) that many bare `ansible-playbook` runs of the same patch on the same host."""
    # Real sshd only where the patch step itself is measured (bench/overhead.py): the
    # window takes the patch time out anyway, and Ansible's local connection saves a
    # second a host on the big pools.
    lab = _start_lab(case, workdir / "lab", ssh=bare_ansible > 0)
    try:
        recorder = Recorder(lab.pool)
        plan = planner.plan(snapshot(lab.pool), lab_policy(strategy))
        inventory = _inventory(lab, strategy)
        state = workdir / "state"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "rollup", "run", str(inventory), "--yes", "--no-tui",
             "--state-dir", str(state)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env(), timeout=1800,
        )  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"rollup run failed ({done.returncode}): {done.stderr[-2000:]}")
        journal = Journal(state)
        run_id = journal.runs(1)[0].id
        patch_wall, next_action = _journal_timings(journal, run_id)
        journal.close()
        result = RunResult(
            tool=f"rollup {strategy}",
            window=recorder.window,
            busy=recorder.busy,
            patch=sum(patch_wall),
            hosts=case.hosts,
            speed=SPEED,
            migrations=recorder.migrations,
            bytes_moved=recorder.bytes_moved,
            wall=wall,
            back_wall=dict(recorder.back_wall),
            next_action_wall=next_action,
            patch_wall=patch_wall,
        )
        bare = [_bare_ansible(lab, workdir) for _ in range(bare_ansible)]
        return result, plan.estimate_seconds, plan.migrations, bare
    finally:
        lab.stop()


def _inventory(lab: RunningLab, strategy: Strategy) -> Path:
    data = lab.inventory()
    group = next(iter(data["all"]["children"].values()))
    group["vars"]["rollup_strategy"] = strategy
    path = lab.directory / "inventory-bench.yml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _journal_timings(journal: Journal, run_id: str) -> tuple[list[float], dict[str, float]]:
    """Each host's patch step (wall seconds), and when rollup acted on its return: the
    `verifying` transition, journaled the moment `wait_back` saw it enabled and live."""
    patch: list[float] = []
    verifying: dict[str, float] = {}
    entered: dict[str, float] = {}
    for transition in journal.transitions(run_id):
        if transition.previous == "patching":
            patch.append(transition.at - entered[transition.host])
        if transition.state == "patching":
            entered[transition.host] = transition.at
        if transition.state == "verifying":
            verifying[transition.host_name] = transition.at
    return patch, verifying


def _bare_ansible(lab: RunningLab, workdir: Path) -> float:
    """The same patch playbook on the same lab host, by a bare `ansible-playbook`."""
    inventory = lab.directory / "inventory.yml"
    host = next(iter(lab.machines))
    started = time.monotonic()
    subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "--limit", host,
         "-e", f"rollup_target_version={TARGET_VERSION}", str(PLAYBOOKS / "lab-patch.yml")],
        check=True, capture_output=True, stdin=subprocess.DEVNULL, env=_env(), timeout=300,
    )  # fmt: skip
    return time.monotonic() - started


def run_baseline(case: Case, workdir: Path) -> RunResult:
    lab = _start_lab(case, workdir / "lab", ssh=False)
    try:
        recorder = Recorder(lab.pool)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(BENCH / "baseline.py"), lab.url, lab.password,
             str(lab.directory), str(SPEED)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env(), timeout=1800,
        )  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"baseline failed ({done.returncode}): {done.stderr[-2000:]}")
        report = yaml.safe_load(done.stdout)
        if report["unreturned"]:
            print(f"  baseline: {report['unreturned']} VM(s) could not go home", file=sys.stderr)
        return RunResult(
            tool="XO-like baseline",
            window=recorder.window,
            busy=recorder.busy,
            patch=0.0,
            hosts=case.hosts,
            speed=SPEED,
            migrations=recorder.migrations,
            bytes_moved=recorder.bytes_moved,
            wall=wall,
            back_wall=dict(recorder.back_wall),
            next_action_wall=report["back"],
        )
    finally:
        lab.stop()


def cases(quick: bool) -> list[Case]:
    """One pool per size at the lab's own fill (RunningLab generates with its default);
    few VMs a host, so four sizes fit in a few minutes of reboots."""
    sizes = (8, 16) if quick else (8, 16, 32, 64)
    return [Case(h, 12, None, seed=7000 + h) for h in sizes]


def measure(quick: bool, strategy: Strategy = "upgraded-first") -> list[PoolResult]:
    results = []
    for case in cases(quick):
        with tempfile.TemporaryDirectory(prefix="rollup-bench-") as tmp:
            rollup_run, bound, planned, bare = run_rollup(
                case, strategy, Path(tmp) / "rollup", bare_ansible=3 if case.hosts == 8 else 0
            )
            baseline_run = run_baseline(case, Path(tmp) / "baseline")
        results.append(PoolResult(case, strategy, rollup_run, baseline_run, bound, planned, bare))
        print(f"  window {case.label}: done", file=sys.stderr)
    return results


def report(results: list[PoolResult]) -> None:
    print("Maintenance window (pool seconds; patch charged 120 s/host to both)")
    print(
        f"{'pool':<28} {'rollup':>8} {'baseline':>9} {'lower bd':>9}"
        f" {'base/rollup':>11} {'rollup/bound':>12} {'migr r/b':>9}"
    )
    for r in results:
        print(
            f"{r.case.label:<28} {r.rollup.charged:>8.0f} {r.baseline.charged:>9.0f}"
            f" {r.lower_bound:>9.0f} {r.baseline.charged / r.rollup.charged:>10.2f}x"
            f" {r.rollup.charged / r.lower_bound:>11.2f}x"
            f" {r.rollup.migrations:>4}/{r.baseline.migrations:<4}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--strategy", default="upgraded-first", choices=("return", "upgraded-first")
    )
    args = parser.parse_args()
    report(measure(args.quick, args.strategy))


if __name__ == "__main__":
    main()
