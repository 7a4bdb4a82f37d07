"""Where events wait between the thread that emits them and the screen that shows them.

The rollout emits from its own loop and from worker threads (migration progress, Ansible
tasks), sometimes thousands a second. Posting each one to the app would queue a message
per event and block the emitter; instead the bus subscriber appends to a deque (atomic
in CPython, so no lock and no waiting) and the app drains it on a 15 Hz timer, folding a
whole burst into one redraw.
"""

from __future__ import annotations

from collections import deque

from rollup.run.events import Event


class EventInbox:
    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self.received = 0

    def __call__(self, event: Event) -> None:
        """The bus subscriber: safe from any thread, never blocks the emitter."""
        self._events.append(event)
        self.received += 1

    def take(self, limit: int = 1_000_000) -> list[Event]:
        taken: list[Event] = []
        while self._events and len(taken) < limit:
            taken.append(self._events.popleft())
        return taken
