"""What every host of a run shares, and what a host's step can raise.

The rollout builds one RunContext per run; HostUpgrade and VmMoves read the pool's
driver, the remote side, the journal and the bus through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollup.drivers import Driver
from rollup.model import Policy, Pool
from rollup.remote import Patcher, RemoteHost
from rollup.run.events import EventBus
from rollup.run.journal import Journal
from rollup.run.placement_live import Ledger


@dataclass
class RunContext:
    """What every host of a run shares: the pool's driver, the remote side, the record."""

    run_id: str
    driver: Driver
    patcher: Patcher
    journal: Journal
    bus: EventBus
    policy: Policy
    remotes: Mapping[str, RemoteHost]  # host id → how to reach its OS
    updates_hash: str = ""  # XenServer: the update repository's hash when planned
    pool_name: str = ""  # the inventory's name for the pool (health gate commands see it)
    ledger: Ledger = field(default_factory=Ledger)
    cancelled: bool = False
    migrations: int = 0

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def sleep(self, seconds: float) -> None:
        """Wait, but not past an abort: checked every half second."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.cancelled:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.5))

    @property
    def uses_ssh(self) -> bool:
        """Whether the run reaches hosts over SSH: the playbook patches them, or hooks run."""
        policy = self.policy
        return policy.update == "playbook" or bool(
            policy.pre_host_playbook or policy.post_host_playbook
        )

    async def snapshot(self, host: str | None = None) -> Pool:
        """The pool now, with what pins VMs read for `host` only when one is given."""
        return await self.call(self.driver.snapshot, None if host is None else (host,))
