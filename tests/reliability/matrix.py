"""A results table for a module of cases: one row per case, its steps and its outcome.

Rows are registered as cases run; `conftest.pytest_terminal_summary` prints every
matrix at the end of the session, so the table shows in any pytest output.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

MATRICES: list[Matrix] = []


@dataclass
class Row:
    case: str
    steps: list[str] = field(default_factory=list)
    ok: bool = False
    error: str = ""
    seconds: float = 0.0

    def note(self, step: str) -> None:
        self.steps.append(step)

    @property
    def outcome(self) -> str:
        if self.ok:
            return "PASS"
        return "FAIL: " + (self.error.strip().splitlines() or ["?"])[0][:100]


@dataclass
class Matrix:
    title: str
    rows: list[Row] = field(default_factory=list)

    def __post_init__(self) -> None:
        MATRICES.append(self)

    def table(self) -> str:
        if not self.rows:
            return f"{self.title}: no case ran"
        width = max(len(row.case) for row in self.rows)
        steps = max(len(" → ".join(row.steps)) for row in self.rows)
        lines = [
            self.title,
            f"  {'case':<{width}}  {'what happened':<{steps}}  {'s':>5}  outcome",
        ]
        for row in self.rows:
            lines.append(
                f"  {row.case:<{width}}  {' → '.join(row.steps):<{steps}}"
                f"  {row.seconds:>5.1f}  {row.outcome}"
            )
        passed = sum(row.ok for row in self.rows)
        lines.append(f"  {passed}/{len(self.rows)} passed")
        return "\n".join(lines)


@contextlib.contextmanager
def record_row(matrix: Matrix, case: str) -> Iterator[Row]:
    """A row for `case`: PASS if the block ends normally, FAIL with the error otherwise."""
    row = Row(case)
    matrix.rows.append(row)
    started = time.monotonic()
    try:
        yield row
    except BaseException as error:
        row.error = f"{type(error).__name__}: {error}"
        raise
    else:
        row.ok = True
    finally:
        row.seconds = time.monotonic() - started
