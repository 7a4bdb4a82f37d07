"""The run lock: one controller's claim on a pool, whatever place the driver keeps it in.

A lock is a JSON record (run id, controller, pid, started, expires) that a `LockStore`
holds as text: xapi's pool.other_config (rollup/drivers/xenapi/lock.py), a file on a
libvirt pool's first host (rollup/drivers/libvirt/lock.py). `RunLock` is the one
algorithm over either: take a free lock, resume our own, break a stale one only when
asked, refresh it, release it.

Neither place offers compare-and-swap. Creating a lock only where none is is atomic in
both (xapi refuses a duplicate key, the shell's noclobber opens with O_EXCL), so taking a
free lock is safe. Replacing one (resume, refresh, breaking a stale lock) compares the
text just before it writes, which narrows but cannot close the window in which two
controllers break the same stale lock.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from rollup.errors import LockHeld
from rollup.model import Lock

log = logging.getLogger("rollup.drivers")

ATTEMPTS = 5  # the lock changing under us this often means another controller is racing


class LockStore(Protocol):
    """Where a pool's lock text lives; every method is blocking and may raise DriverError."""

    @property
    def pool(self) -> str:
        """The pool's name, for messages."""
        ...

    def read(self) -> str | None:
        """The lock text now; None if there is no lock."""
        ...

    def create(self, text: str) -> bool:
        """Store `text` only if there is no lock, atomically; False if there is one."""
        ...

    def replace(self, expected: str, text: str | None) -> bool:
        """Store `text` (None: remove the lock) if the lock still is `expected`."""
        ...


class RunLock:
    """The run lock of one pool, kept in `store`."""

    def __init__(self, store: LockStore) -> None:
        self.store = store

    def take(self, lock: Lock, break_stale: bool = False) -> None:
        pool = self.store.pool
        for _ in range(ATTEMPTS):
            if self.store.create(format_lock(lock)):
                log.info("took the run lock of pool %s for run %s", pool, lock.run_id)
                return
            text = self.store.read()
            if text is None:
                continue  # released between our attempt and our read
            held = parse_lock(text)
            assert held is not None
            if held.run_id == lock.run_id:
                log.info("pool %s: run %s already holds the lock; resuming", pool, lock.run_id)
                if self.store.replace(text, format_lock(lock)):
                    return
                continue
            stale = held.expires < time.time()
            if not (stale and break_stale):
                raise LockHeld(held_message(pool, held, stale))
            log.warning("pool %s: breaking the stale lock of run %s", pool, held.run_id)
            if self.store.replace(text, format_lock(lock)):
                return
        raise LockHeld(f"pool {pool}: the run lock kept changing while we took it; retry later")

    def refresh(self, lock: Lock) -> None:
        """Extend our lock's expiry; LockHeld if it is no longer ours."""
        pool = self.store.pool
        text = self.store.read()
        held = parse_lock(text)
        if held is None or held.run_id != lock.run_id or text is None:
            owner = f"run {held.run_id} on {held.controller}" if held else "nobody"
            raise LockHeld(f"pool {pool}: run {lock.run_id} lost its lock (now held by {owner})")
        if not self.store.replace(text, format_lock(lock)):
            raise LockHeld(f"pool {pool}: the run lock changed while run {lock.run_id} renewed it")

    def release(self, run_id: str) -> None:
        """Remove the lock if it is `run_id`'s; another run's lock is left alone."""
        pool = self.store.pool
        text = self.store.read()
        held = parse_lock(text)
        if held is None or text is None:
            log.info("pool %s: no run lock to release", pool)
            return
        if held.run_id != run_id:
            log.info(
                "pool %s: lock belongs to run %s, not %s; left alone", pool, held.run_id, run_id
            )
            return
        # Compared like any replacement, so a lock broken and retaken since we read it stays.
        self.store.replace(text, None)
        log.info("pool %s: released the run lock of run %s", pool, run_id)


def parse_lock(text: str | None) -> Lock | None:
    """The run lock stored as JSON; an unreadable one is reported as held by nobody known."""
    if not text:
        return None
    try:
        data = json.loads(text)
        return Lock(
            run_id=str(data["run_id"]),
            controller=str(data["controller"]),
            pid=int(data["pid"]),
            started=float(data["started"]),
            expires=float(data["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("the run lock is not a rollup lock record: %r", text[:200])
        # Started and expired at the epoch: stale, so only --break-lock takes it over.
        return Lock(run_id="?", controller="unreadable lock", pid=0, started=0.0, expires=0.0)


def format_lock(lock: Lock) -> str:
    return json.dumps(
        {
            "run_id": lock.run_id,
            "controller": lock.controller,
            "pid": lock.pid,
            "started": lock.started,
            "expires": lock.expires,
        },
        sort_keys=True,
    )


def held_message(pool: str, held: Lock, stale: bool) -> str:
    """Why LockHeld refuses a run, and what the person can do about it."""
    owner = (
        f"pool {pool} is locked by run {held.run_id} on {held.controller} "
        f"(pid {held.pid}, started {_when(held.started)})"
    )
    if stale:
        return (
            f"{owner}; the lock expired at {_when(held.expires)}: if that run is gone, "
            "rerun with --break-lock"
        )
    return f"{owner} until {_when(held.expires)}: wait for that run to finish"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class HoldsRunLock:
    """The Driver protocol's lock methods over a RunLock: a driver inherits them and sets
    `_lock` to its RunLock when it is built."""

    _lock: RunLock

    def lock(self, lock: Lock, break_stale: bool = False) -> None:
        self._lock.take(lock, break_stale)

    def refresh_lock(self, lock: Lock) -> None:
        self._lock.refresh(lock)

    def unlock(self, run_id: str) -> None:
        self._lock.release(run_id)
