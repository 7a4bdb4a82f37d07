"""rollup run and rollup resume: a run from its plan to its exit code."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from rollup.codec import from_data
from rollup.commands.plan import load_pool, pool_session, state_dir
from rollup.commands.run_setup import (
    build_rollout,
    confirm,
    record_run,
    refusal,
    terminal,
    tui_wanted,
)
from rollup.commands.session import PoolSession
from rollup.config import inventory as inventories
from rollup.errors import EXIT_OK, EXIT_REFUSED, BadInput
from rollup.model import Plan
from rollup.run.journal import Journal
from rollup.run.left_behind import carried_on
from rollup.run.rollout import Rollout
from rollup.text.plurals import count


def cmd_run(args: argparse.Namespace) -> int:
    from rollup.output import report

    if args.pools is not None:
        from rollup.commands.fleet import cmd_fleet

        return cmd_fleet(args)
    config = load_pool(args)
    journal = Journal(state_dir(args))
    with pool_session(config, args) as session:
        pool = session.read_pool()
        remotes = session.remotes(pool)
        plan = session.plan(pool)
        if not plan.feasible:
            report.print_plan(plan, file=sys.stderr)
            print(f"rollup: the plan is refused by {refusal(plan)}", file=sys.stderr)
            return EXIT_REFUSED
        if not args.yes and terminal() and not tui_wanted(args):
            report.print_plan(plan)
            if not confirm("Upgrade this pool now?"):
                print("rollup: nothing was changed", file=sys.stderr)
                return EXIT_OK
        elif not args.yes and not terminal():
            # Nobody to ask here: the plan goes to the log and the run waits for
            # `rollup approve RUN` from whoever reviews it (a change board, a person).
            report.print_plan(plan, file=sys.stderr)
        run_id = record_run(journal, args, config.name, pool, plan)
        return _execute(args, session, journal, run_id, plan, remotes, resumed=None)


def cmd_resume(args: argparse.Namespace) -> int:
    journal = Journal(state_dir(args))
    record = journal.run(args.run) if args.run else journal.latest_unfinished()
    if record is None:
        what = f"run {args.run}" if args.run else "unfinished run"
        raise BadInput(f"there is no {what} in {journal.path}: see `rollup history`")
    if record.state in ("completed", "aborted"):
        raise BadInput(f"run {record.id} is {record.state}: nothing to resume")
    if carried_on(record):
        # Paused in its own process (`rollup pause`, a --no-tui run waiting after a
        # failure): that process goes on.
        journal.send_command(record.id, "resume")
        print(f"rollup: resume sent to run {record.id} (pid {record.pid})", file=sys.stderr)
        return EXIT_OK
    plan = from_data(Plan, record.plan)
    if not Path(record.inventory).exists():
        raise BadInput(
            f"run {record.id} used inventory {record.inventory}, which is gone: restore it"
        )
    loaded = inventories.load(record.inventory, vault_password_file=args.vault_password_file)
    config = inventories.select_pool(loaded, record.pool)
    # The controller may have died while the master rebooted: give its API time. An
    # in-process lab comes back as the paused run left it, not fresh.
    wait = config.policy.host_timeout_seconds
    with pool_session(config, args, wait_seconds=wait, restore_lab=True) as session:
        pool = session.driver.snapshot()
        if pool.id != record.pool_id:
            raise BadInput(
                f"run {record.id} was for pool {record.pool_id}, but {record.inventory}"
                f" now reaches pool {pool.id}: fix the inventory"
            )
        remotes = session.remotes(pool)
        return _execute(
            args,
            session,
            journal,
            record.id,
            plan,
            remotes,
            resumed=journal.host_states(record.id),
        )


def _execute(
    args: argparse.Namespace,
    session: PoolSession,
    journal: Journal,
    run_id: str,
    plan: Plan,
    remotes: dict[str, Any],
    resumed: dict[str, Any] | None,
) -> int:
    use_tui = tui_wanted(args)
    rollout, notifier = build_rollout(
        args,
        session,
        journal,
        run_id,
        plan,
        remotes,
        resumed,
        log_stream=None if use_tui else sys.stderr,
    )
    try:
        return _follow(args, session, journal, rollout, plan, resumed, use_tui)
    finally:
        if notifier is not None:
            notifier.close()  # the last notifications go out before rollup exits


def _follow(
    args: argparse.Namespace,
    session: PoolSession,
    journal: Journal,
    rollout: Rollout,
    plan: Plan,
    resumed: dict[str, Any] | None,
    use_tui: bool,
) -> int:
    """Run the rollout under the TUI or in the pipeline mode; its exit code."""
    run_id = rollout.ctx.run_id
    if not use_tui:
        print(
            f"rollup: run {run_id} on pool {session.config.name}"
            f" ({count(len(plan.steps), 'host')}, journal {journal.path})",
            file=sys.stderr,
        )
    if use_tui:
        from rollup.tui.app import run_dashboard

        # The plan screen asks first unless --yes or a resume (already approved).
        shown = run_dashboard(rollout, rollout.ctx.bus, confirm=not args.yes and resumed is None)
        if shown is None:
            journal.discard_run(run_id)
            print("rollup: nothing was changed", file=sys.stderr)
            return EXIT_OK
        finished = shown
    else:
        finished = asyncio.run(_drive(rollout))
    if finished.outcome == "paused" and use_tui:
        print(f"rollup: run {run_id} paused: {finished.message}", file=sys.stderr)
    return finished.exit_code


async def _drive(rollout: Rollout) -> Any:
    """Run the rollout; the first Ctrl-C or SIGTERM detaches at the next safe point."""
    loop = asyncio.get_running_loop()
    interrupted = 0

    def detach() -> None:
        nonlocal interrupted
        interrupted += 1
        if interrupted == 1:
            rollout.request("detach")
            print(
                "\nrollup: stopping at the next safe point (again to stop at once;"
                f" `rollup resume {rollout.ctx.run_id}` continues)",
                file=sys.stderr,
            )
        else:
            raise KeyboardInterrupt

    # A closed terminal (SIGHUP) detaches too: the pipeline or ssh session is gone.
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in stops:
        loop.add_signal_handler(sig, detach)
    try:
        return await rollout.execute()
    finally:
        for sig in stops:
            loop.remove_signal_handler(sig)
