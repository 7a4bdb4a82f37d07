"""What `rollup run` of one pool and of a fleet share: a run id, whether someone is at the
terminal, and one pool's rollout wired to its sinks."""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rollup.codec import to_data
from rollup.commands.plan import state_dir
from rollup.commands.session import PoolSession
from rollup.model import Plan, Pool
from rollup.output.sinks import JsonLinesSink, LogSink
from rollup.run.context import RunContext
from rollup.run.events import EventBus
from rollup.run.journal import Journal, JournalSink
from rollup.run.rollout import Rollout, RunOptions
from rollup.text.plurals import count


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def record_run(
    journal: Journal, args: argparse.Namespace, pool_name: str, pool: Pool, plan: Plan
) -> str:
    """A new run of `plan` in the journal, before anything changes; its id."""
    run_id = new_run_id()
    journal.create_run(
        run_id,
        pool=pool_name,
        pool_id=pool.id,
        inventory=str(Path(args.inventory).resolve()),
        controller=socket.gethostname(),
        plan=to_data(plan),
    )
    return run_id


def refusal(plan: Plan) -> str:
    """Why a plan may not run: its failing checks, counted, with their reasons."""
    failed = [c for c in plan.checks if c.status == "fail"]
    return f"{count(len(failed), 'failing check')}: " + "; ".join(c.reason for c in failed)


def terminal() -> bool:
    """Someone is there to ask (Textual draws on stderr, so it must be a terminal too)."""
    return sys.stdin.isatty() and sys.stdout.isatty() and sys.stderr.isatty()


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def build_rollout(
    args: argparse.Namespace,
    session: PoolSession,
    journal: Journal,
    run_id: str,
    plan: Plan,
    remotes: dict[str, Any],
    resumed: dict[str, Any] | None,
    log_stream: TextIO | None,
    wait_when_paused: bool | None = None,
    show_pool: bool = False,
) -> tuple[Rollout, Any]:
    """The run of one pool with its sinks: the journal's, JSON lines, the log, JUnit and
    notifications. Returns the rollout and the notifier to close once it is over."""
    from rollup.remote.patcher import AnsiblePatcher

    bus = EventBus(session.config.name)
    # What resume and `rollup status` trust: if it cannot be written the run stops at
    # its next safe point rather than go on unrecorded (the other sinks are dropped).
    bus.subscribe(JournalSink(journal), essential=True)
    if args.json:
        bus.subscribe(JsonLinesSink(sys.stdout))
    if log_stream is not None:
        bus.subscribe(LogSink(log_stream, verbose=args.verbose, show_pool=show_pool))
    if args.junit:
        from rollup.output.junit import JUnitSink

        hosts = [(step.host, step.host_name) for step in plan.steps]
        bus.subscribe(
            JUnitSink(
                junit_path(args.junit, session.config.name, show_pool), session.config.name, hosts
            )
        )
    notifier = None
    if session.config.notify:
        from rollup.output.notify import NotifySink

        notifier = NotifySink(session.config.notify, bus, session.config.name)
        bus.subscribe(notifier)
    patcher = AnsiblePatcher(state_dir(args) / "runs" / run_id)
    ctx = RunContext(
        run_id=run_id,
        driver=session.driver,
        patcher=patcher,
        journal=journal,
        bus=bus,
        policy=plan.policy,
        remotes=remotes,
        updates_hash=plan.pool.updates_hash,
        pool_name=session.config.name,
    )
    options = RunOptions(
        yes=args.yes,
        break_lock=args.break_lock,
        wait_when_paused=tui_wanted(args) if wait_when_paused is None else wait_when_paused,
        approve_start=not args.yes and not terminal() and resumed is None,
    )
    return Rollout(ctx, plan, options, resumed=resumed), notifier


def junit_path(path: str, pool: str, per_pool: bool) -> str:
    """A fleet writes one JUnit file per pool: report.xml → report-POOL.xml."""
    if not per_pool:
        return path
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{pool}.{suffix}" if dot and "/" not in suffix else f"{path}-{pool}"


def tui_wanted(args: argparse.Namespace) -> bool:
    """The dashboard needs a terminal; the pipeline mode never loads Textual."""
    return terminal() and not getattr(args, "json", False) and not args.no_tui
