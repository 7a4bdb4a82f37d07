"""Maintenance window: full lab runs of `rollup run` and of the XO-like baseline.

    python bench/window.py [--quick]

For each pool, fresh labs from the same seed (so the same pool): one upgraded by
bench/baseline.py (a child process, a XenAPI client doing what Xen Orchestra's rolling
pool update does), and one per rollup configuration by the real `rollup run --yes` (a
child process, over XenAPI and Ansible, as a pipeline runs it): `upgraded-first` one
host at a time, then with `--max-parallel-hosts 2` and `4`, and `return` one host at a
time (CONFIGS). The lab records every run (bench/recorder.py).

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

Several hosts at once: one host's patch (real seconds of Ansible, hundreds of pool
seconds) then overlaps another's reboot, so the pool-wide busy/idle split no longer
says what the window would be. rollup's window is then counted host by host, with the
plan rollup journaled: each host's step runs from its disable to its last change (enabled
after the reboot, its VMs back or restarted), its own busy time (its reboot, migrations
out of it or into it) in pool seconds, the rest (less its own patch step) in real
seconds, plus the fixed patch; a batch lasts as long as its slowest host (rollup waits
for the whole batch), and the controller's time between batches counts in real seconds.
One host at a time, this is the pool-wide count (both are printed for those runs).

The lower bound: the plan rollup journaled for that very run (its batches, its moves)
timed with the lab's own model (1 GiB/s per migration, 3 at once per source host, 100 s
from host.reboot to enabled, the same fixed patch), batch after batch, each as long as
its slowest host: the reboots nobody can avoid plus the fewest seconds its migrations
can take.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pools import PATCH_SECONDS, Case, lab_policy
from recorder import Recorder

from rollup import bundled
from rollup.codec import from_data
from rollup.lab.releases import CURRENT_XCP_NG as TARGET_VERSION
from rollup.lab.xapi.running import RunningLab
from rollup.model import Plan, Policy, Strategy
from rollup.plan.estimate import step_seconds
from rollup.run.journal import Journal
from rollup.text.plurals import count

# The installed command, as a user runs it (`python -m rollup` would import the checkout).
ROLLUP = str(Path(sysconfig.get_path("scripts")) / "rollup")

BENCH = Path(__file__).resolve().parent
SPEED = 200.0  # the rollout tests' speed: a 100 s reboot takes half a second
# Each lab gets its own loopback /24 so an sshd left by one can never answer for the next.
_networks = itertools.count(140)
# rollup's configurations, (strategy, --max-parallel-hosts); the first is the main one.
MAIN: tuple[Strategy, int] = ("upgraded-first", 1)
CONFIGS: tuple[tuple[Strategy, int], ...] = (
    MAIN,
    ("upgraded-first", 2),
    ("upgraded-first", 4),
    ("return", 1),
)


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
    by_steps: float | None = None  # rollup: the window counted host by host (see above)
    batches: int = 0  # rollup: batches in the plan it ran

    @property
    def think(self) -> float:
        """Real seconds the pool waited on its controller, its own patch step aside."""
        return max(0.0, (self.window - self.busy) / self.speed - self.patch)

    @property
    def pooled(self) -> float:
        """The window counted pool-wide: the lab's work in pool seconds, the controller's
        think time in real seconds, the patch at the same fixed cost (one host at a
        time only: see above)."""
        return self.busy + self.think + self.hosts * PATCH_SECONDS

    @property
    def charged(self) -> float:
        """The window a real pool would live (host by host where it was counted so)."""
        return self.by_steps if self.by_steps is not None else self.pooled


@dataclass
class Rollout:
    """One `rollup run` configuration on a pool, with the lower bound of its own plan."""

    strategy: Strategy
    parallel: int
    run: RunResult
    lower_bound: float
    planned_migrations: int

    @property
    def label(self) -> str:
        return f"{self.strategy} x{self.parallel}"


@dataclass
class PoolResult:
    case: Case
    baseline: RunResult
    rollouts: dict[tuple[Strategy, int], Rollout]
    bare_ansible_wall: list[float] = field(default_factory=list)

    @property
    def main(self) -> Rollout:
        return self.rollouts[MAIN]

    @property
    def rollup(self) -> RunResult:
        """The main configuration's run (bench/overhead.py reads its timings)."""
        return self.main.run


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
        # The pool these windows were measured on: XCP-ng 8.2 to 8.3 by the lab's
        # playbook, against the baseline writing the same files.
        release="8.2.1",
        update="playbook",
    )


def _env() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("ROLLUP_API_PASSWORD", None)
    return environment


def run_rollup(
    case: Case, strategy: Strategy, workdir: Path, bare_ansible: int = 0, parallel: int = 1
) -> tuple[Rollout, list[float]]:
    """One `rollup run` on a fresh lab, with the lower bound from the plan it ran, and
    (when asked) that many bare `ansible-playbook` runs of the same patch on one host."""
    # Real sshd only where the patch step itself is measured (bench/overhead.py): the
    # window takes the patch time out anyway, and Ansible's local connection saves a
    # second a host on the big pools.
    lab = _start_lab(case, workdir / "lab", ssh=bare_ansible > 0)
    try:
        recorder = Recorder(lab.pool)
        inventory = _inventory(lab, strategy)
        state = workdir / "state"
        started = time.monotonic()
        done = subprocess.run(
            [ROLLUP, "run", str(inventory), "--yes", "--no-tui",
             "--max-parallel-hosts", str(parallel), "--state-dir", str(state)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env(), timeout=1800,
        )  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"rollup run failed ({done.returncode}): {done.stderr[-2000:]}")
        journal = Journal(state)
        record = journal.runs(1)[0]
        patch_wall, next_action, patch_of = _journal_timings(journal, record.id)
        journal.close()
        plan = from_data(Plan, record.plan)
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
            by_steps=_by_steps(recorder, plan, patch_of),
            batches=len(plan.batches),
        )
        bound = lower_bound(plan, lab_policy(strategy, parallel))
        bare = [_bare_ansible(lab, workdir) for _ in range(bare_ansible)]
        return Rollout(strategy, parallel, result, bound, plan.migrations), bare
    finally:
        lab.stop()


def lower_bound(plan: Plan, policy: Policy) -> float:
    """That plan's batches and moves, timed with the lab's model (see above)."""
    return sum(
        max((step_seconds(s.evacuate, s.restore, policy) for s in batch.steps), default=0.0)
        for batch in plan.batches
    )


def _by_steps(recorder: Recorder, plan: Plan, patch: dict[str, float]) -> float:
    """rollup's window counted host by host, batch by batch (see above)."""
    starts = []
    for batch in plan.batches:
        disabled = [recorder.disabled_at.get(s.host_name, [None])[0] for s in batch.steps]
        starts.append(min((t for t in disabled if t is not None), default=None))
    total, previous_end = 0.0, None
    for index, batch in enumerate(plan.batches):
        start = starts[index]
        if start is None:
            continue
        following = [t for t in starts[index + 1 :] if t is not None]
        limit = following[0] if following else float("inf")
        if previous_end is not None:
            total += max(0.0, start - previous_end) / SPEED  # the controller, between batches
        slowest, end_of_batch = 0.0, start
        for step in batch.steps:
            name = step.host_name
            begin = recorder.disabled_at[name][0]
            changes = [t for t in recorder.enabled_at.get(name, []) if begin < t < limit]
            changes += [b for _, dst, _, b in recorder.moves if dst == name and begin < b < limit]
            changes += [t for host, t in recorder.started if host == name and begin < t < limit]
            end = max(changes, default=begin)
            busy = recorder.busy_between(name, begin, end)
            think = max(0.0, (end - begin - busy) / SPEED - patch.get(name, 0.0))
            slowest = max(slowest, busy + think + PATCH_SECONDS)
            end_of_batch = max(end_of_batch, end)
        total += slowest
        previous_end = end_of_batch
    return total


def _inventory(lab: RunningLab, strategy: Strategy) -> Path:
    data = lab.inventory()
    group = next(iter(data["all"]["children"].values()))
    group["vars"]["rollup_strategy"] = strategy
    path = lab.directory / "inventory-bench.yml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _journal_timings(
    journal: Journal, run_id: str
) -> tuple[list[float], dict[str, float], dict[str, float]]:
    """Each host's patch step (wall seconds), and when rollup acted on its return: the
    `verifying` transition, journaled the moment `wait_back` saw it enabled and live;
    and the patch seconds by host name."""
    patch: list[float] = []
    verifying: dict[str, float] = {}
    entered: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for transition in journal.transitions(run_id):
        if transition.previous == "patching":
            patch.append(transition.at - entered[transition.host])
            name = transition.host_name
            by_name[name] = by_name.get(name, 0.0) + patch[-1]
        if transition.state == "patching":
            entered[transition.host] = transition.at
        if transition.state == "verifying":
            verifying[transition.host_name] = transition.at
    return patch, verifying, by_name


def _bare_ansible(lab: RunningLab, workdir: Path) -> float:
    """The same patch playbook on the same lab host, by a bare `ansible-playbook`."""
    inventory = lab.directory / "inventory.yml"
    host = next(iter(lab.machines))
    started = time.monotonic()
    subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "--limit", host,
         "-e", f"rollup_target_version={TARGET_VERSION}", bundled.playbook("lab-patch.yml")],
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
            unreturned = count(report["unreturned"], "VM")
            print(f"  baseline: {unreturned} could not go home", file=sys.stderr)
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


def cases(quick: bool, sizes: tuple[int, ...] | None = None) -> list[Case]:
    """One pool per size at the lab's own fill (RunningLab generates with its default);
    few VMs a host, so the sizes and configurations fit in a few minutes of reboots."""
    sizes = sizes or ((8,) if quick else (8, 16, 32, 64))
    return [Case(h, 12, None, seed=7000 + h) for h in sizes]


def wanted(case: Case, strategy: Strategy, parallel: int) -> bool:
    """`return` one host at a time runs on the small pools only (it is the slowest run
    and its window differs from `upgraded-first`'s by its returns only); the 64-host
    pool runs one host at a time and 4 at once, the two ends of the range."""
    if case.hosts >= 64:
        return strategy == "upgraded-first" and parallel in (1, 4)
    return strategy != "return" or case.hosts <= 16


def measure(
    quick: bool,
    configs: tuple[tuple[Strategy, int], ...] = CONFIGS,
    sizes: tuple[int, ...] | None = None,
) -> list[PoolResult]:
    results = []
    for case in cases(quick, sizes):
        rollouts: dict[tuple[Strategy, int], Rollout] = {}
        bare: list[float] = []
        with tempfile.TemporaryDirectory(prefix="rollup-bench-") as tmp:
            for strategy, parallel in configs:
                if not wanted(case, strategy, parallel):
                    continue
                started = time.monotonic()
                # The patch step over real sshd is measured once, on the smallest pool.
                asked = 3 if case.hosts == 8 and (strategy, parallel) == MAIN else 0
                rollout, timed = run_rollup(
                    case, strategy, Path(tmp) / f"rollup-{strategy}-{parallel}", asked, parallel
                )
                rollouts[(strategy, parallel)] = rollout
                bare += timed
                print(
                    f"  window {case.label}, rollup {rollout.label}:"
                    f" {time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                )
            started = time.monotonic()
            baseline_run = run_baseline(case, Path(tmp) / "baseline")
            print(
                f"  window {case.label}, baseline: {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
        results.append(PoolResult(case, baseline_run, rollouts, bare))
    return results


def report(results: list[PoolResult]) -> None:
    print("Maintenance window (pool seconds; patch charged 120 s a host step to both)")
    print(
        f"{'pool':<26} {'rollup':<19} {'batches':>7} {'window':>7} {'pooled':>7}"
        f" {'lower bd':>8} {'base/rollup':>11} {'rollup/bound':>12} {'migr r/b':>9}"
    )
    for r in results:
        print(
            f"{r.case.label:<26} {'baseline (XO-like)':<19} {r.case.hosts:>7}"
            f" {r.baseline.charged:>7.0f} {'':>7} {'':>8} {'':>11} {'':>12}"
            f" {r.baseline.migrations:>9}"
        )
        for rollout in r.rollouts.values():
            run = rollout.run
            pooled = f"{run.pooled:.0f}" if rollout.parallel == 1 else "-"
            print(
                f"{'':<26} {rollout.label:<19} {run.batches:>7} {run.charged:>7.0f}"
                f" {pooled:>7} {rollout.lower_bound:>8.0f}"
                f" {r.baseline.charged / run.charged:>10.2f}x"
                f" {run.charged / rollout.lower_bound:>11.2f}x"
                f" {run.migrations:>4}/{r.baseline.migrations:<4}"
            )


def _config(text: str) -> tuple[Strategy, int]:
    strategy, _, parallel = text.partition(":")
    if strategy not in ("return", "upgraded-first"):
        raise argparse.ArgumentTypeError(f"unknown strategy {strategy!r}")
    return strategy, int(parallel or 1)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--hosts", action="append", type=int, help="pool size, repeatable (default 8-64)"
    )
    parser.add_argument(
        "--config",
        action="append",
        type=_config,
        help="STRATEGY[:HOSTS_AT_ONCE], repeatable; default: all of CONFIGS"
        " (upgraded-first first, as it is the main one)",
    )
    args = parser.parse_args()
    configs = tuple(args.config) if args.config else CONFIGS
    if MAIN not in configs:
        configs = (MAIN, *configs)
    report(measure(args.quick, configs, tuple(args.hosts) if args.hosts else None))


if __name__ == "__main__":
    main()
