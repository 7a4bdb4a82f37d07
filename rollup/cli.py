"""Command line: plan, run, resume, status, history, approve, lab. Exit codes live in errors."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("rollup: not yet", file=sys.stderr)
    return 1
