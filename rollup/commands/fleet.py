"""rollup run --pools: several pools of one inventory, each its own run.

Each pool keeps what a run of one pool has: its own run lock, maintenance window, plan
checked just before it starts, journal run (so `rollup status`, `resume` and `report`
work per pool) and notifications. Up to --max-parallel-pools run at once, each in its own
thread with its own event loop; the others wait for a free slot, in inventory order. A
pool that is refused, unreachable or fails does not stop the others; the exit code is
the most serious of theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import FrameType
from typing import Any

from rollup.commands.plan import load_inventory, pool_session, state_dir
from rollup.commands.run_setup import (
    build_rollout,
    confirm,
    record_run,
    refusal,
    terminal,
    tui_wanted,
)
from rollup.config.inventory import PoolConfig, select_pools
from rollup.errors import (
    EXIT_ABORTED,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_REFUSED,
    BadInput,
    RollupError,
)
from rollup.output.sinks import JsonLinesSink
from rollup.run.events import PoolFinished
from rollup.run.journal import Journal
from rollup.run.rollout import Rollout
from rollup.text.plurals import count
from rollup.text.quoting import one_line

log = logging.getLogger("rollup")

# The fleet's exit code is its most serious pool's: a failed host first, a clean run last.
SEVERITY = (EXIT_FAILED, EXIT_ABORTED, EXIT_PAUSED, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_OK)


@dataclass
class PoolOutcome:
    pool: str
    exit_code: int
    summary: str  # "completed: ...", "refused: ...", the error's line
    run_id: str = ""


def fleet_exit_code(outcomes: Sequence[PoolOutcome]) -> int:
    codes = {outcome.exit_code for outcome in outcomes}
    return next((code for code in SEVERITY if code in codes), EXIT_FAILED)


class Fleet:
    """Runs the pools, `parallel` at a time, and keeps each one's outcome."""

    def __init__(
        self,
        args: argparse.Namespace,
        journal: Journal,
        pools: Sequence[PoolConfig],
        on_rollout: Callable[[str, Rollout], None] | None = None,
    ) -> None:
        self.args = args
        self.journal = journal
        self.pools = list(pools)
        self.stopping = threading.Event()
        self._active: dict[str, Rollout] = {}
        self._lock = threading.Lock()
        self.on_rollout = on_rollout  # the TUI's hook: a pool's rollout is about to start
        self.outcomes: dict[str, PoolOutcome] = {}

    def stop(self) -> None:
        """Detach every running pool at its next safe point and start no other."""
        self.stopping.set()
        with self._lock:
            for rollout in self._active.values():
                rollout.request("detach")

    def outcomes_when_done(self) -> list[PoolOutcome]:
        """Each pool's outcome, once every pool has one (after `stop`, at safe points)."""
        while len(self.outcomes) < len(self.pools):
            time.sleep(0.2)
        return [self.outcomes[config.name] for config in self.pools]

    def rollout(self, pool: str) -> Rollout | None:
        with self._lock:
            return self._active.get(pool)

    def run(self, parallel: int) -> list[PoolOutcome]:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="pool") as executor:
            futures: list[Future[PoolOutcome]] = [
                executor.submit(self.one, config) for config in self.pools
            ]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5)
        return [future.result() for future in futures]

    def one(self, config: PoolConfig) -> PoolOutcome:
        if self.stopping.is_set():
            outcome = PoolOutcome(config.name, EXIT_PAUSED, "not started: the fleet was stopped")
        else:
            try:
                outcome = self._run_pool(config)
            except RollupError as error:
                outcome = PoolOutcome(config.name, error.exit_code, one_line(error.message))
            except Exception as error:  # one pool's bug must not take the others down
                log.exception("pool %s", config.name)
                outcome = PoolOutcome(
                    config.name, EXIT_FAILED, f"internal error: {type(error).__name__}: {error}"
                )
        self.outcomes[config.name] = outcome
        self._say(config.name, outcome.summary)
        if self.args.json:  # a pipeline learns of every pool, also those that never ran
            JsonLinesSink(sys.stdout)(
                PoolFinished(
                    outcome.run_id,
                    pool=config.name,
                    exit_code=outcome.exit_code,
                    summary=outcome.summary,
                )
            )
        return outcome

    def _run_pool(self, config: PoolConfig) -> PoolOutcome:
        args = self.args
        with pool_session(config, args) as session:
            pool = session.read_pool()
            remotes = session.remotes(pool)
            plan = session.plan(pool)
            if not plan.feasible:
                return PoolOutcome(config.name, EXIT_REFUSED, "refused: " + refusal(plan))
            if not args.yes and not terminal():
                from rollup.output import report

                report.print_plan(plan, file=sys.stderr)
            run_id = record_run(self.journal, args, config.name, pool, plan)
            self._say(config.name, f"run {run_id} ({count(len(plan.steps), 'host')})")
            rollout, notifier = build_rollout(
                args,
                session,
                self.journal,
                run_id,
                plan,
                remotes,
                resumed=None,
                log_stream=None if self.on_rollout else sys.stderr,
                wait_when_paused=False,
                show_pool=True,
            )
            with self._lock:
                self._active[config.name] = rollout
            if self.stopping.is_set():
                rollout.request("detach")
            if self.on_rollout is not None:
                self.on_rollout(config.name, rollout)
            try:
                finished = asyncio.run(rollout.execute())
            finally:
                with self._lock:
                    self._active.pop(config.name, None)
                if notifier is not None:
                    notifier.close()
            summary = (
                f"{finished.outcome}: {finished.message}"
                if finished.message
                else (finished.outcome)
            )
            return PoolOutcome(config.name, finished.exit_code, summary, run_id)

    def _say(self, pool: str, text: str) -> None:
        if self.on_rollout is None:
            print(f"rollup: [{pool}] {text}", file=sys.stderr, flush=True)


def cmd_fleet(args: argparse.Namespace) -> int:
    if args.pool:
        raise BadInput("--pool and --pools both name pools: use --pools a,b (or all) alone")
    if args.max_parallel_pools < 1:
        raise BadInput(
            f"--max-parallel-pools must be 1 or more, got {args.max_parallel_pools};"
            " e.g. --max-parallel-pools 2"
        )
    pools = select_pools(load_inventory(args), args.pools)
    journal = Journal(state_dir(args))
    fleet = Fleet(args, journal, pools)
    if not args.yes and terminal() and not _confirm(args, pools):
        print("rollup: nothing was changed", file=sys.stderr)
        return EXIT_OK
    if tui_wanted(args):
        from rollup.tui.fleet import run_fleet_dashboard

        outcomes = run_fleet_dashboard(fleet, args.max_parallel_pools)
    else:
        print(
            f"rollup: {count(len(pools), 'pool')} ({', '.join(p.name for p in pools)}),"
            f" up to {args.max_parallel_pools} at once; journal {journal.path}",
            file=sys.stderr,
        )
        outcomes = _with_signals(fleet, lambda: fleet.run(args.max_parallel_pools))
    return _report(outcomes)


def _confirm(args: argparse.Namespace, pools: Sequence[PoolConfig]) -> bool:
    """Every pool's plan as it is now, then one question (each is re-planned as it starts)."""
    from rollup.output import report

    for config in pools:
        with pool_session(config, args) as session:
            pool = session.read_pool()
            report.print_plan(session.plan(pool))
    return confirm(f"Upgrade these {count(len(pools), 'pool')} now?")


def _with_signals(fleet: Fleet, work: Callable[[], list[PoolOutcome]]) -> list[PoolOutcome]:
    """The first Ctrl-C or SIGTERM detaches every pool at its next safe point."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def detach(signum: int, frame: FrameType | None) -> None:
        if fleet.stopping.is_set():
            # The journal is written as it goes: every pool stays resumable from it.
            print("\nrollup: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        fleet.stop()
        print(
            "\nrollup: stopping every pool at its next safe point (again to stop at once;"
            " `rollup resume RUN` continues each)",
            file=sys.stderr,
        )

    previous: dict[int, Any] = {sig: signal.signal(sig, detach) for sig in stops}
    try:
        return work()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _report(outcomes: Sequence[PoolOutcome]) -> int:
    code = fleet_exit_code(outcomes)
    done = sum(1 for o in outcomes if o.exit_code == EXIT_OK)
    print(
        f"rollup: {count(len(outcomes), 'pool')}: {done} completed, {len(outcomes) - done} not"
        f" (exit {code})",
        file=sys.stderr,
    )
    width = max(len(o.pool) for o in outcomes)
    for outcome in outcomes:
        run = f"run {outcome.run_id}" if outcome.run_id else "no run"
        print(
            f"  {outcome.pool:<{width}}  {run:<26} exit {outcome.exit_code}  {outcome.summary}",
            file=sys.stderr,
        )
    return code
