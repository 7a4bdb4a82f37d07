"""RunLock, the one run-lock algorithm of both drivers, against a store in memory.

The boundary is ours: RunLock only asks a LockStore to read, create and
compare-then-replace a text, so an attribute holding that text is a faithful store.
Expiry is compared with time.time(), so the locks here expire an hour before or after
now instead of anything sleeping.
"""

from __future__ import annotations

import time

import pytest

from rollup.drivers.run_lock import ATTEMPTS, RunLock, format_lock, parse_lock
from rollup.errors import LockHeld
from rollup.model import Lock

HOUR = 3600.0


class MemoryStore:
    """A LockStore holding the lock text in an attribute; `text` is what a pool would show."""

    pool = "pool-a"

    def __init__(self, text: str | None = None) -> None:
        self.text = text

    def read(self) -> str | None:
        return self.text

    def create(self, text: str) -> bool:
        if self.text is not None:
            return False
        self.text = text
        return True

    def replace(self, expected: str, text: str | None) -> bool:
        if self.text != expected:
            return False
        self.text = text
        return True


class RacingStore(MemoryStore):
    """Another controller rewrites the lock between each of our reads and our replace."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.replaces = 0

    def read(self) -> str | None:
        current = self.text
        rival = parse_lock(current)
        assert rival is not None
        self.text = format_lock(a_lock(rival.run_id, expires_in=-HOUR, pid=rival.pid + 1))
        return current

    def replace(self, expected: str, text: str | None) -> bool:
        self.replaces += 1
        return super().replace(expected, text)


def a_lock(run_id: str, expires_in: float = HOUR, pid: int = 101, controller: str = "ops-a"):
    now = time.time()
    return Lock(run_id, controller, pid, now - 10, now + expires_in)


def held(store: MemoryStore) -> Lock | None:
    return parse_lock(store.text)


def test_a_free_lock_is_taken():
    store = MemoryStore()
    lock = a_lock("run-1")
    RunLock(store).take(lock)
    assert held(store) == lock


def test_a_run_resumes_its_own_lock_with_the_new_expiry():
    store = MemoryStore(format_lock(a_lock("run-1", expires_in=60)))
    longer = a_lock("run-1", expires_in=2 * HOUR, pid=102)
    RunLock(store).take(longer)
    assert held(store) == longer


def test_a_live_lock_of_another_run_is_refused_naming_that_run():
    theirs = a_lock("run-1", controller="ops-b", pid=202)
    store = MemoryStore(format_lock(theirs))
    with pytest.raises(LockHeld) as caught:
        RunLock(store).take(a_lock("run-2"), break_stale=True)
    message = str(caught.value)
    assert "pool pool-a is locked by run run-1 on ops-b (pid 202, started " in message
    assert "wait for that run to finish" in message
    assert "--break-lock" not in message
    assert held(store) == theirs


def test_a_stale_lock_is_refused_without_break_stale():
    stale = a_lock("run-old", expires_in=-HOUR)
    store = MemoryStore(format_lock(stale))
    with pytest.raises(
        LockHeld, match=r"expired at .*: if that run is gone, rerun with --break-lock"
    ):
        RunLock(store).take(a_lock("run-new"))
    assert held(store) == stale


def test_a_stale_lock_is_broken_with_break_stale():
    store = MemoryStore(format_lock(a_lock("run-old", expires_in=-HOUR)))
    ours = a_lock("run-new")
    RunLock(store).take(ours, break_stale=True)
    assert held(store) == ours


def test_an_unreadable_lock_counts_as_stale():
    store = MemoryStore("not a lock")
    with pytest.raises(LockHeld, match=r"locked by run \? on unreadable lock"):
        RunLock(store).take(a_lock("run-1"))
    RunLock(store).take(a_lock("run-1"), break_stale=True)
    assert held(store) is not None and held(store).run_id == "run-1"


def test_refresh_extends_our_lock():
    store = MemoryStore()
    RunLock(store).take(a_lock("run-1", expires_in=60))
    longer = a_lock("run-1", expires_in=2 * HOUR)
    RunLock(store).refresh(longer)
    assert held(store) == longer


def test_refresh_of_a_lock_someone_else_took_raises_lock_held():
    store = MemoryStore(format_lock(a_lock("run-2", controller="ops-b")))
    with pytest.raises(LockHeld, match=r"run-1 lost its lock \(now held by run run-2 on ops-b\)"):
        RunLock(store).refresh(a_lock("run-1"))


def test_refresh_of_a_released_lock_raises_lock_held():
    with pytest.raises(LockHeld, match=r"run-1 lost its lock \(now held by nobody\)"):
        RunLock(MemoryStore()).refresh(a_lock("run-1"))


def test_release_removes_our_lock():
    store = MemoryStore(format_lock(a_lock("run-1")))
    RunLock(store).release("run-1")
    assert store.text is None
    RunLock(store).release("run-1")  # nothing left to release: fine


def test_release_leaves_another_runs_lock_alone():
    theirs = a_lock("run-2")
    store = MemoryStore(format_lock(theirs))
    RunLock(store).release("run-1")
    assert held(store) == theirs


def test_a_lock_that_keeps_changing_is_given_up_after_the_attempts():
    store = RacingStore(format_lock(a_lock("run-old", expires_in=-HOUR)))
    with pytest.raises(LockHeld, match="the run lock kept changing while we took it; retry later"):
        RunLock(store).take(a_lock("run-new"), break_stale=True)
    assert store.replaces == ATTEMPTS
    lock = held(store)
    assert lock is not None and lock.run_id == "run-old"


def test_a_lock_round_trips_through_its_text():
    lock = Lock("run-1", "ops", 12, 100.5, 200.5)
    assert parse_lock(format_lock(lock)) == lock


def test_no_text_is_no_lock():
    assert parse_lock(None) is None
    assert parse_lock("") is None


def test_unreadable_text_is_a_lock_expired_at_the_epoch():
    lock = parse_lock("not json")
    assert lock is not None
    assert (lock.run_id, lock.expires) == ("?", 0.0)
