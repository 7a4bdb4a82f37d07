"""`rollup status` and `rollup history`: what the journal knows, for people and scripts."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rollup.errors import EXIT_OK
from rollup.output.sinks import LogSink
from rollup.run.events import EventBus
from rollup.run.follow import JournalFollower
from rollup.run.journal import Journal, RunRecord

FINAL = ("completed", "failed", "aborted")
STYLE = {"done": "green", "failed": "bold red", "skipped": "yellow", "pending": "dim"}


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def status_data(journal: Journal, record: RunRecord) -> dict[str, Any]:
    steps = [step for batch in record.plan.get("batches", []) for step in batch.get("steps", [])]
    states = journal.host_states(record.id)
    hosts = []
    for step in steps:
        last = states.get(step["host"])
        hosts.append(
            {
                "host": step["host"],
                "name": step["host_name"],
                "state": last.state if last else "pending",
                "since": last.at if last else None,
                "detail": (last.detail.get("error") or last.detail.get("reason", ""))
                if last
                else "",
                # The last lines of output that show why a failed host failed, journaled
                # with its failure (a host retried since has none).
                "evidence": list(last.detail.get("evidence", [])) if last else [],
            }
        )
    for skipped in record.plan.get("skipped", []):
        hosts.append(
            {
                "host": skipped["host"],
                "name": skipped["host_name"],
                "state": "skipped",
                "since": None,
                "detail": skipped["reason"],
                "evidence": [],
            }
        )
    return {
        "run": record.id,
        "pool": record.pool,
        "inventory": record.inventory,
        "controller": record.controller,
        "pid": record.pid,
        "started": record.started,
        "finished": record.finished,
        "state": record.state,
        "outcome": record.outcome,
        "message": record.message,
        "hosts": hosts,
    }


def print_status(journal: Journal, record: RunRecord, as_json: bool, watch: bool) -> int:
    if watch:
        return _watch(journal, record)
    data = status_data(journal, record)
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    console.print(
        f"[bold]run {data['run']}[/] on pool [bold]{data['pool']}[/]: {data['state']}"
        f" (started {_when(data['started'])} on {data['controller']})"
    )
    if data["message"]:
        console.print(f"  {data['message']}")
    table = Table(box=None, pad_edge=False)
    for column in ("host", "state", "since", "detail"):
        table.add_column(column)
    for host in data["hosts"]:
        state = host["state"]
        table.add_row(
            host["name"],
            f"[{STYLE.get(state, 'cyan')}]{state}[/]",
            _when(host["since"]),
            host["detail"],
        )
    console.print(table)
    for host in data["hosts"]:
        if host["state"] == "failed" and host["evidence"]:
            console.print(f"\n[bold]{escape(host['name'])}[/]: the last lines of its output")
            for line in host["evidence"]:
                # Output as it was printed: no markup read into it, no wrapping, so the
                # lines can be copied and searched.
                console.print(Text(f"  | {line}"), soft_wrap=True)
    if data["state"] not in FINAL:
        console.print(f"continue it with: rollup resume {data['run']}")
    return EXIT_OK


def _watch(journal: Journal, record: RunRecord) -> int:
    """Follow a run from the journal, as another process writes it, in log lines: the
    dashboard's follower with the pipeline's log sink instead of the dashboard."""
    bus = EventBus()
    bus.subscribe(LogSink(sys.stderr, verbose=True))
    finished = asyncio.run(JournalFollower(journal, record, bus).execute())
    return finished.exit_code if finished is not None else EXIT_OK


def print_history(journal: Journal, as_json: bool) -> int:
    runs = journal.runs()
    if as_json:
        json.dump(
            [
                {
                    "run": r.id,
                    "pool": r.pool,
                    "started": r.started,
                    "finished": r.finished,
                    "state": r.state,
                    "outcome": r.outcome,
                    "message": r.message,
                }
                for r in runs
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    if not runs:
        console.print(f"no runs yet in {journal.path}")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("run", "pool", "started", "state", "message"):
        table.add_column(column)
    for r in runs:
        table.add_row(r.id, r.pool, _when(r.started), r.state, r.message or "")
    console.print(table)
    return EXIT_OK
