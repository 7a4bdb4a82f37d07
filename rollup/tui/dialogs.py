"""Modal screens: a yes/no confirmation for commands that change the run, and the help."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class Confirm(ModalScreen[bool]):
    """Asks once; `y` or the Yes button confirms, `n`, escape or No declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, consequence: str) -> None:
        super().__init__()
        self.question = question
        self.consequence = consequence

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question, style="bold"), id="question")
            yield Static(Text(self.consequence), id="consequence")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


KEYS = (
    ("p", "pause / resume", "pause takes effect between steps: no migration is cut short"),
    ("y", "approve", "let the run go on past the canary gate"),
    ("s", "skip host", "skip the selected host (asks first); a skipped host is not touched"),
    ("r", "retry", "retry the failed step of the selected host"),
    ("a", "abort", "stop the run (asks first); the pool is left safe, HA and lock restored"),
    ("l", "log", "show or hide the log"),
    ("/", "filter", "show only hosts whose name or state contains the text"),
    ("q", "quit", "detach: the run stops at a safe point, `rollup resume RUN` continues it"),
    ("↑ ↓ / click", "select", "choose the host the detail pane shows"),
)
STATES = (
    "A host goes: pending → checking → disabling → evacuating (VMs out) → patching →"
    " rebooting → verifying → enabling → restoring (VMs back) → done."
    "  ✗ failed: the host stays disabled, every VM keeps running elsewhere."
    "  ⊘ skipped: the host is not upgraded."
)


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, name, what in KEYS:
            table.add_row(key, name, what)
        with Vertical(id="dialog"):
            yield Static(Text("Keys", style="bold underline"))
            yield Static(table)
            yield Static(Text(STATES, style="dim"), id="states")
            yield Static(Text("escape or ? closes this help", style="dim italic"))

    def on_click(self) -> None:
        self.dismiss()
