"""The run lock on the pool: `pool.other_config["rollup.lock"]`, a record with an owner.

xapi has no compare-and-swap on other_config, but `add_to_other_config` refuses an
existing key (MAP_DUPLICATE_KEY), which is enough to take a free lock atomically. Replacing
a lock (resume, refresh, breaking a stale one) re-reads it just before removing it, which
narrows but cannot close the window in which two controllers break the same stale lock.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from rollup.drivers.xenapi.records import LOCK_KEY, format_lock, parse_lock
from rollup.drivers.xenapi.session import Session
from rollup.errors import DriverError, LockHeld
from rollup.model import Lock

log = logging.getLogger("rollup.drivers.xenapi")

ATTEMPTS = 5  # the lock changing under us this often means another controller is racing


class PoolLock:
    def __init__(self, api: Session) -> None:
        self.api = api

    def take(self, lock: Lock, break_stale: bool = False) -> None:
        pool, name = self._pool()
        for _ in range(ATTEMPTS):
            if self._add(pool, lock):
                log.info("took the run lock of pool %s for run %s", name, lock.run_id)
                return
            text = self._read(pool)
            if text is None:
                continue  # released between our add and our read
            held = parse_lock(text)
            assert held is not None
            if held.run_id == lock.run_id:
                log.info("pool %s: run %s already holds the lock; resuming", name, lock.run_id)
                if self._replace(pool, text, lock):
                    return
                continue
            stale = held.expires < time.time()
            if not (stale and break_stale):
                raise LockHeld(held_message(name, held, stale))
            log.warning("pool %s: breaking the stale lock of run %s", name, held.run_id)
            if self._replace(pool, text, lock):
                return
        raise LockHeld(f"pool {name}: the run lock kept changing while we took it; retry later")

    def refresh(self, lock: Lock) -> None:
        """Extend our lock's expiry; LockHeld if it is no longer ours."""
        pool, name = self._pool()
        text = self._read(pool)
        held = parse_lock(text)
        if held is None or held.run_id != lock.run_id or text is None:
            owner = f"run {held.run_id} on {held.controller}" if held else "nobody"
            raise LockHeld(f"pool {name}: run {lock.run_id} lost its lock (now held by {owner})")
        if not self._replace(pool, text, lock):
            raise LockHeld(f"pool {name}: the run lock changed while run {lock.run_id} renewed it")

    def release(self, run_id: str) -> None:
        pool, name = self._pool()
        text = self._read(pool)
        held = parse_lock(text)
        if held is None:
            log.info("pool %s: no run lock to release", name)
            return
        if held.run_id != run_id:
            log.info(
                "pool %s: lock belongs to run %s, not %s; left alone", name, held.run_id, run_id
            )
            return
        self.api.call("release the run lock", "pool.remove_from_other_config", pool, LOCK_KEY)
        log.info("pool %s: released the run lock of run %s", name, run_id)

    def _pool(self) -> tuple[str, str]:
        pool = self.api.call("find the pool", "pool.get_all")[0]
        return pool, str(self.api.call("read the pool's name", "pool.get_name_label", pool))

    def _read(self, pool: str) -> str | None:
        config = self.api.call("read the run lock", "pool.get_other_config", pool)
        return config.get(LOCK_KEY)

    def _add(self, pool: str, lock: Lock) -> bool:
        try:
            self.api.call(
                "take the run lock", "pool.add_to_other_config", pool, LOCK_KEY, format_lock(lock)
            )
        except DriverError as exc:
            if exc.code == "MAP_DUPLICATE_KEY":
                return False
            raise
        return True

    def _replace(self, pool: str, expected: str, lock: Lock) -> bool:
        if self._read(pool) != expected:
            return False
        self.api.call("replace the run lock", "pool.remove_from_other_config", pool, LOCK_KEY)
        return self._add(pool, lock)


def held_message(pool: str, held: Lock, stale: bool) -> str:
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
