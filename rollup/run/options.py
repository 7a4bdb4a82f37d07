"""How a run is steered from outside: its options, and the daily window it starts hosts in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock

from rollup.model import Window


@dataclass(frozen=True)
class RunOptions:
    yes: bool = False  # approve the canary gate without asking
    break_lock: bool = False  # take over a stale lock left by a dead controller
    lock_ttl: float = 4 * 3600.0
    # Interactive runs wait in `paused` for a command; pipeline runs exit 5 instead.
    wait_when_paused: bool = False
    command_poll_seconds: float = 0.5
    # Pipeline runs without --yes wait here for `rollup approve RUN` before any change.
    approve_start: bool = False
    clock: Callable[[], datetime] = datetime.now  # the window's clock (a test seam)


def in_window(window: Window | None, now: datetime) -> bool:
    if window is None:
        return True
    current = clock(now.hour, now.minute)
    if window.start <= window.end:
        return window.start <= current < window.end
    return current >= window.start or current < window.end


def window_text(window: Window | None) -> str:
    if window is None:
        return ""
    return f"{window.start:%H:%M}-{window.end:%H:%M}"
