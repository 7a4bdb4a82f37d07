"""What every host of a run shares, and what a host's step can raise.

The rollout builds one RunContext per run; HostUpgrade and VmMoves read the pool's
driver, the remote side, the journal and the bus through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollup.drivers import Driver
from rollup.errors import RollupError
from rollup.model import Policy, Pool
from rollup.remote import RemoteHost
from rollup.run.events import EventBus
from rollup.run.journal import Journal
from rollup.run.placement_live import Ledger


@dataclass(frozen=True)
class PatchResult:
    ok: bool
    reboot_required: bool = True
    failed_task: str = ""
    message: str = ""
    output_tail: str = ""
    output_file: str = ""


TaskCallback = Callable[[str, str, str], None]  # task, status, message


class Patcher(Protocol):
    """What a host's operating system must do for us (rollup/remote/patcher.py)."""

    def play(
        self,
        host: RemoteHost,
        playbook: str,
        extravars: Mapping[str, Any],
        on_task: TaskCallback,
        cancelled: Callable[[], bool],
    ) -> PatchResult: ...

    def reachable(self, host: RemoteHost) -> bool: ...


class HostFailed(RollupError):
    """A host's step failed; the message carries the evidence, `state` where it happened."""

    def __init__(self, message: str, code: str = "", output_tail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.output_tail = output_tail


class HostSkipped(RollupError):
    pass


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
    ledger: Ledger = field(default_factory=Ledger)
    cancelled: bool = False
    migrations: int = 0

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def snapshot(self, host: str | None = None) -> Pool:
        """The pool now, with what pins VMs read for `host` only when one is given."""
        return await self.call(self.driver.snapshot, None if host is None else (host,))
