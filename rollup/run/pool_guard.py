"""The pool-wide guards of a run: its lock on the pool and HA paused around the batches.

Taken before the first host changes and given back after the last, also on failure:
the rollout calls them, the driver does them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

from rollup.drivers import HA_WAITS_FOR_VERSIONS, HaState
from rollup.errors import DriverError, LockHeld
from rollup.model import Lock
from rollup.run.context import RunContext
from rollup.run.options import RunOptions

Say = Callable[..., None]  # the rollout's _say(text, level="info")
Request = Callable[..., None]  # the rollout's request(command, host, reason)


class PoolGuard:
    def __init__(self, ctx: RunContext, options: RunOptions, say: Say, request: Request) -> None:
        self.ctx = ctx
        self.options = options
        self._say = say
        self._request = request

    def lock_record(self) -> Lock:
        now = time.time()
        return Lock(
            run_id=self.ctx.run_id,
            controller=socket.gethostname(),
            pid=os.getpid(),
            started=now,
            expires=now + self.options.lock_ttl,
        )

    async def refresh_lock(self) -> None:
        while True:
            await asyncio.sleep(self.options.lock_ttl / 4)
            try:
                await self.ctx.call(self.ctx.driver.refresh_lock, self.lock_record())
            except DriverError as error:
                self._say(f"could not refresh the run lock: {error.message}", "warning")
            except LockHeld as error:
                # Someone broke our lock and took the pool: two runs must never drive one
                # pool, so this one stops where it is safe and says why.
                self._say(f"{error.message}: stopping at the next safe point", "error")
                self._request("detach", reason=f"the run lost its lock ({error.message})")
                return

    async def pause_ha(self) -> HaState:
        """HA (and the pool's automatic VM starts) off for the run; what they were is
        journaled first, so a crash or a resume restores them exactly."""
        record = self.ctx.journal.run(self.ctx.run_id)
        if record is not None and record.ha is not None:
            # Resumed: what the pool looked like before the FIRST start is what we restore.
            detail = tuple((str(k), str(v)) for k, v in record.ha.get("detail", ()))
            original = HaState(
                enabled=bool(record.ha.get("enabled")),
                detail=detail,
                paused=str(record.ha.get("paused", "")),
            )
            await self.ctx.call(self.ctx.driver.pause_ha)
            # A paused run gave them back: the resumed one takes them again, and says so.
            if original.enabled:
                self._say("HA disabled again for the resumed run; restored at its end")
            if original.paused:
                self._say(f"{original.paused}: set again for the resumed run, restored at its end")
            return original
        state: HaState = await self.ctx.call(self.ctx.driver.pause_ha)
        self.ctx.journal.set_ha(
            self.ctx.run_id,
            {
                "enabled": state.enabled,
                "detail": [list(d) for d in state.detail],
                "paused": state.paused,
            },
        )
        if state.enabled:
            self._say("HA disabled for the run; it is restored at the end, also on failure")
        if state.paused:
            self._say(f"{state.paused}: set for the run, restored at its end, also on failure")
        return state

    async def restore_ha(self, state: HaState) -> None:
        try:
            await self.ctx.call(self.ctx.driver.restore_ha, state)
            if state.enabled:
                self._say("HA restored")
            if state.paused:
                self._say(f"{state.paused}: restored as it was before the run")
        except DriverError as error:
            if error.code == HA_WAITS_FOR_VERSIONS:
                # xapi refuses HA while versions differ: it comes back with the last host.
                self._say(
                    f"HA stays off while {error.message}: `rollup resume {self.ctx.run_id}`"
                    " turns it on again after the last host",
                    "warning",
                )
                return
            self._say(f"could not restore HA: {error.message}: enable it by hand", "error")

    async def unlock(self) -> None:
        try:
            await self.ctx.call(self.ctx.driver.unlock, self.ctx.run_id)
        except DriverError as error:
            self._say(f"could not release the run lock: {error.message}", "warning")
