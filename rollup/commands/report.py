"""`rollup report [RUN]`: a run told after the fact, as one HTML file or as Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rollup.commands.plan import state_dir
from rollup.errors import EXIT_OK, BadInput
from rollup.run.journal import Journal


def cmd_report(args: argparse.Namespace) -> int:
    from rollup.output import run_report, run_story

    journal = Journal(state_dir(args))
    record = journal.run(args.run) if args.run else next(iter(journal.runs(1)), None)
    if record is None:
        raise BadInput(f"no run {args.run or ''} in {journal.path}: see `rollup history`")
    story = run_story.read(journal, record.id)
    if args.format == "markdown":
        text = run_report.markdown_report(story)
        default = "-"
    else:
        text = run_report.html_report(story)
        default = f"rollup-{record.id}.html"
    output = args.output or default
    if output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(output)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise BadInput(
            f"cannot write the report to {path}: {error.strerror}: choose another -o"
        ) from None
    print(f"rollup: report of run {record.id} written to {path}", file=sys.stderr)
    return EXIT_OK
