"""The pool's event log: what `event.from` serves, with monotonically increasing ids.

A token is the id of the last event a client has seen, as a decimal string; "" means
"from the beginning". The log keeps the latest `keep` events; a token older than that
gets `EVENTS_LOST`, as xapi answers when a client falls too far behind; so does a token
the log never issued (one from before the lab restarted).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from rollup.lab.xapi.failure import XapiFailure


@dataclass(frozen=True)
class Event:
    id: int
    timestamp: float
    cls: str  # XenAPI class name: "host", "VM", "task"...
    operation: str  # "add" | "mod" | "del"
    ref: str
    snapshot: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "timestamp": f"{self.timestamp:.6f}",
            "class": self.cls,
            "operation": self.operation,
            "ref": self.ref,
            "snapshot": self.snapshot,
        }


class EventLog:
    def __init__(self, keep: int = 10000) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._last = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def token(self) -> str:
        with self._cond:
            return str(self._last)

    def emit(self, cls: str, operation: str, ref: str, snapshot: dict[str, Any], at: float) -> int:
        with self._cond:
            self._last += 1
            self._events.append(Event(self._last, at, cls, operation, ref, snapshot))
            self._cond.notify_all()
            return self._last

    def since(
        self, token: str, classes: set[str] | None, timeout: float
    ) -> tuple[list[Event], str]:
        """Events after `token` in `classes` (None: all), waiting up to `timeout` real seconds."""
        after = parse_token(token)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                # Too old, or ahead of this log (issued by a xapi that has since restarted
                # from its database): the client cannot know what it missed.
                if (self._events and after < self._events[0].id - 1) or after > self._last:
                    raise XapiFailure("EVENTS_LOST")
                found = [
                    e
                    for e in self._events
                    if e.id > after and (classes is None or e.cls.lower() in classes)
                ]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0 or self._closed:
                    return found, str(max(after, self._last))
                self._cond.wait(remaining)

    def wake(self) -> None:
        """Wake every waiter (e.g. the API is going down)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def parse_token(token: str) -> int:
    if token in ("", None):
        return 0
    try:
        return int(str(token).split(",")[0])
    except ValueError:
        raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
