"""Following a run that another process drives, from its journal.

`rollup status --watch RUN` opens the same dashboard as `rollup run`: the events come
from the journal instead of the bus, and the keys become commands in the journal,
which the running controller takes between steps. Leaving only stops watching.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rollup.codec import from_data
from rollup.model import Plan
from rollup.run.events import EventBus, RunFinished, from_dict
from rollup.run.journal import Journal, RunRecord


@dataclass(frozen=True)
class FollowContext:
    run_id: str


class JournalFollower:
    """Quacks like a Rollout for the dashboard: a plan, `request()` and `execute()`."""

    def __init__(
        self, journal: Journal, record: RunRecord, bus: EventBus, poll_seconds: float = 0.2
    ) -> None:
        self.journal = journal
        self.plan = from_data(Plan, record.plan)
        self.ctx = FollowContext(record.id)
        self.bus = bus
        self.poll_seconds = poll_seconds
        self._stop = False

    def request(self, command: str, host: str | None = None) -> None:
        if command == "detach":
            self._stop = True  # the viewer leaves; the run goes on
        else:
            self.journal.send_command(self.ctx.run_id, command, host)

    async def execute(self) -> RunFinished | None:
        seen = 0
        while not self._stop:
            for seq, data in self.journal.events(self.ctx.run_id, after=seen):
                seen = seq
                event = from_dict(data)
                if event is None:
                    continue
                self.bus.emit(event)
                if isinstance(event, RunFinished):
                    return event
            record = self.journal.run(self.ctx.run_id)
            if record is None or record.finished is not None:
                return None
            await asyncio.sleep(self.poll_seconds)
        return None
