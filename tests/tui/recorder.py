"""A stand-in for `Rollout` that records the commands the TUI sends.

`execute` replays scripted events on the bus, then waits, as a real run does, until it is
told to detach or abort, and finishes the way a real run would then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import SimpleNamespace

from scenario import RUN_ID

from rollup.model import Plan
from rollup.run.events import Event, EventBus, RunFinished


class RecordingRollout:
    def __init__(self, plan: Plan, bus: EventBus, events: Sequence[Event] = ()) -> None:
        self.plan = plan
        self.bus = bus
        self.events = events
        self.ctx = SimpleNamespace(run_id=RUN_ID)
        self.requests: list[tuple[str, str | None]] = []
        self.started = threading.Event()
        self._stop = threading.Event()

    def request(self, command: str, host: str | None = None) -> None:
        self.requests.append((command, host))
        if command in ("detach", "abort"):
            self._stop.set()

    async def execute(self) -> RunFinished:
        self.started.set()
        for event in self.events:
            self.bus.emit(event)
        while not self._stop.is_set():
            await asyncio.sleep(0.01)
        aborted = ("abort", None) in self.requests
        outcome = "aborted" if aborted else "paused"
        finished = RunFinished(
            RUN_ID,
            outcome=outcome,
            exit_code=4 if aborted else 5,
            message="aborted by the operator" if aborted else "detached by the operator",
            hosts_done=1,
            hosts_failed=0,
            hosts_skipped=0,
            migrations=3,
            seconds=1.0,
        )
        self.bus.emit(finished)
        return finished
