"""rollup status, history, and approve/pause/abort sent to a run through the journal."""

from __future__ import annotations

import argparse
import sys

from rollup.commands.plan import state_dir
from rollup.commands.run_setup import terminal
from rollup.drivers import registry
from rollup.errors import EXIT_OK, BadInput
from rollup.run.events import EventBus
from rollup.run.journal import Journal, RunRecord
from rollup.run.left_behind import abort_now, carried_on


def cmd_status(args: argparse.Namespace) -> int:
    from rollup.output.status import print_status

    journal = Journal(state_dir(args))
    record = journal.run(args.run) if args.run else next(iter(journal.runs(1)), None)
    if record is None:
        raise BadInput(f"no run {args.run or ''} in {journal.path}: see `rollup history`")
    if args.watch and terminal() and not args.json:
        from rollup.run.follow import JournalFollower
        from rollup.tui.app import run_dashboard

        bus = EventBus()
        finished = run_dashboard(JournalFollower(journal, record, bus), bus, confirm=False)
        return finished.exit_code if finished is not None else EXIT_OK
    return print_status(journal, record, as_json=args.json, watch=args.watch)


def cmd_history(args: argparse.Namespace) -> int:
    from rollup.output.status import print_history

    return print_history(Journal(state_dir(args)), as_json=args.json)


def _steerable(args: argparse.Namespace) -> tuple[Journal, RunRecord]:
    """The journal and the run `args.run` names, if it still takes commands."""
    journal = Journal(state_dir(args))
    record = journal.run(args.run)
    if record is None:
        raise BadInput(f"no run {args.run} in {journal.path}: see `rollup history`")
    if record.state in ("completed", "failed", "aborted"):
        raise BadInput(f"run {record.id} is {record.state}: it takes no more commands")
    return journal, record


def cmd_send(args: argparse.Namespace) -> int:
    journal, record = _steerable(args)
    if args.command == "abort" and not carried_on(record):
        # No process carries the run on (paused, detached, or its controller died): it
        # would take the abort only at a resume. Finish it here, touching nothing.
        terms = registry.terms(str(record.plan.get("pool", {}).get("driver") or ""))
        for line in abort_now(journal, record, terms):
            print(f"rollup: {line}", file=sys.stderr)
        print(f"rollup: run {record.id} aborted ({record.state} before)", file=sys.stderr)
        return EXIT_OK
    journal.send_command(record.id, args.command)
    live = f"{record.state}, pid {record.pid}"
    print(f"rollup: {args.command} sent to run {record.id} ({live})", file=sys.stderr)
    return EXIT_OK


def cmd_steer(args: argparse.Namespace) -> int:
    """`rollup skip|retry RUN HOST`: what the TUI's `s` and `r` send, from any shell."""
    journal, record = _steerable(args)
    hosts = {str(h["name"]): str(h["id"]) for h in record.plan["pool"]["hosts"]}
    if args.host not in hosts:
        raise BadInput(
            f"run {record.id} has no host {args.host}: use one of {', '.join(sorted(hosts))}"
        )
    host = hosts[args.host]
    last = journal.host_states(record.id).get(host)
    state = last.state if last is not None else "pending"
    allowed = ("pending", "failed") if args.command == "skip" else ("failed",)
    if state not in allowed:
        raise BadInput(
            f"{args.host} is {state} in run {record.id}: {args.command} takes a"
            f" {' or '.join(allowed)} host"
        )
    journal.send_command(record.id, args.command, host)
    if not carried_on(record):
        print(
            f"rollup: {args.command} {args.host} recorded for run {record.id} ({record.state}):"
            f" `rollup resume {record.id}` carries it out",
            file=sys.stderr,
        )
        return EXIT_OK
    if args.command == "skip" and state == "failed" and record.state == "paused":
        journal.send_command(record.id, "resume")  # as the TUI does: the others go on
    print(
        f"rollup: {args.command} {args.host} sent to run {record.id}"
        f" ({record.state}, pid {record.pid})",
        file=sys.stderr,
    )
    return EXIT_OK
