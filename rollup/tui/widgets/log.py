"""The run's log: the same lines `rollup run --no-tui` prints, coloured by level."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from rollup.tui import cells
from rollup.tui.state import LOG_LINES, LogLine


class RunLog(RichLog):
    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=LOG_LINES, wrap=True, markup=False, auto_scroll=True)

    def append(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            text = Text(cells.clock(line.at) + " ", style="dim")
            text.append(line.text, style=cells.LEVEL_STYLE.get(line.level, ""))
            self.write(text)
