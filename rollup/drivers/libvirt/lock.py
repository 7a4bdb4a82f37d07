"""The run lock of a libvirt pool: a file on the pool's first host, over SSH.

libvirt has no pool object to hold a lock, so the lock lives where every controller
looks the same way: `/var/lib/rollup/lock` on the first host of the inventory group (on
disk, so it survives that host's reboot). It holds the same record as the XenAPI lock
(run id, controller, pid, started, expires). Taking a free lock is atomic: the shell's
noclobber (`set -C`) creates the file with O_EXCL. Replacing one (resume, refresh,
breaking a stale lock) compares the text just before, which narrows but cannot close
the window in which two controllers break the same stale lock — as with XenAPI.
"""

from __future__ import annotations

import logging
import shlex
import time

from rollup.drivers.libvirt.hostos import LOCK, ROOT, run
from rollup.drivers.xenapi.lock import held_message
from rollup.drivers.xenapi.records import format_lock, parse_lock
from rollup.errors import LockHeld
from rollup.model import Lock
from rollup.remote import RemoteHost

log = logging.getLogger("rollup.drivers.libvirt")

ATTEMPTS = 5  # the lock changing under us this often means another controller is racing


class FileLock:
    def __init__(self, host: RemoteHost, pool: str) -> None:
        self.host = host
        self.pool = pool

    def take(self, lock: Lock, break_stale: bool = False) -> None:
        for _ in range(ATTEMPTS):
            if self._create(lock):
                log.info("took the run lock of pool %s for run %s", self.pool, lock.run_id)
                return
            text = self.read()
            if text is None:
                continue  # released between our attempt and our read
            held = parse_lock(text)
            assert held is not None
            if held.run_id == lock.run_id:
                log.info("pool %s: run %s already holds the lock; resuming", self.pool, lock.run_id)
                if self._replace(text, lock):
                    return
                continue
            stale = held.expires < time.time()
            if not (stale and break_stale):
                raise LockHeld(held_message(self.pool, held, stale))
            log.warning("pool %s: breaking the stale lock of run %s", self.pool, held.run_id)
            if self._replace(text, lock):
                return
        raise LockHeld(
            f"pool {self.pool}: the run lock kept changing while we took it; retry later"
        )

    def refresh(self, lock: Lock) -> None:
        text = self.read()
        held = parse_lock(text)
        if held is None or held.run_id != lock.run_id or text is None:
            owner = f"run {held.run_id} on {held.controller}" if held else "nobody"
            raise LockHeld(
                f"pool {self.pool}: run {lock.run_id} lost its lock (now held by {owner})"
            )
        if not self._replace(text, lock):
            raise LockHeld(
                f"pool {self.pool}: the run lock changed while run {lock.run_id} renewed it"
            )

    def release(self, run_id: str) -> None:
        text = self.read()
        held = parse_lock(text)
        if held is None:
            log.info("pool %s: no run lock to release", self.pool)
            return
        if held.run_id != run_id:
            log.info("pool %s: lock belongs to run %s, not %s", self.pool, held.run_id, run_id)
            return
        self._replace(text or "", None)
        log.info("pool %s: released the run lock of run %s", self.pool, run_id)

    def read(self) -> str | None:
        text = run(self.host, f"{ROOT}; cat {LOCK} 2>/dev/null || true", "read the run lock")
        return text.strip() or None

    def _create(self, lock: Lock) -> bool:
        command = (
            f'{ROOT}; mkdir -p "$root/var/lib/rollup" &&'
            f" (set -C; printf '%s\\n' {shlex.quote(format_lock(lock))} > {LOCK}) 2>/dev/null"
            " && echo taken || true"
        )
        return run(self.host, command, "take the run lock").strip() == "taken"

    def _replace(self, expected: str, lock: Lock | None) -> bool:
        """Put `lock` (None: nothing) where the file still holds `expected`."""
        if lock is None:
            write = f"rm -f {LOCK}"
        else:
            text = shlex.quote(format_lock(lock))
            write = f"printf '%s\\n' {text} > {LOCK}.partial && mv {LOCK}.partial {LOCK}"
        command = (
            f'{ROOT}; if [ "$(cat {LOCK} 2>/dev/null)" = {shlex.quote(expected)} ]; then'
            f" {write} && echo replaced; fi"
        )
        return run(self.host, command, "replace the run lock").strip() == "replaced"
