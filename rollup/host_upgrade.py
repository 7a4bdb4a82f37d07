"""HostUpgrade: one host's way through disable → evacuate → patch → reboot → verify →
enable → restore, as a `transitions` state machine whose states are journaled.

Every state's action is idempotent — disabling a disabled host, evacuating an empty one,
waiting for a boot that already happened are no-ops — so after a crash `rollup resume`
re-enters the last journaled state and simply runs its action again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

from transitions import Machine

from rollup.drivers import Driver
from rollup.errors import DriverError, MigrationRefused, RemoteError, RollupError
from rollup.events import (
    ActionResult,
    AnsibleTask,
    EventBus,
    HostStateChanged,
    Message,
    MigrationProgress,
    PlanDivergence,
)
from rollup.journal import Journal
from rollup.model import VM, HostStep, Move, Policy, Pool, version_key
from rollup.placement_live import Ledger, choose_destination
from rollup.remote import RemoteHost

SEQUENCE = (
    "pending",
    "checking",
    "disabling",
    "evacuating",
    "patching",
    "rebooting",
    "verifying",
    "enabling",
    "restoring",
    "done",
)
HOST_STATES = (*SEQUENCE, "failed", "skipped")
# States in which a host is out of service because of us.
OUT_OF_SERVICE = ("patching", "rebooting", "verifying", "enabling")
# A failure in these states puts the host back in service: it was never patched.
BEFORE_PATCH = ("checking", "disabling", "evacuating")
# Journal note: the version a host came back at when it should have been upgraded.
CAME_BACK_AT = "came_back_at"


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


class HostUpgrade:
    """One host's state machine. The engine (`run`) drives it; transitions only record."""

    state: str

    def __init__(self, ctx: RunContext, step: HostStep, batch_hosts: frozenset[str]) -> None:
        self.ctx = ctx
        self.step = step
        self.batch_hosts = batch_hosts
        self.error: HostFailed | None = None
        self.failed_in: str | None = None
        self.reason = ""
        self.machine = Machine(
            model=self,
            states=list(HOST_STATES),
            initial="pending",
            auto_transitions=False,
            after_state_change="_record",
            send_event=True,
        )
        for source, dest in pairwise(SEQUENCE):
            self.machine.add_transition("advance", source, dest)
        self.machine.add_transition("skip_reboot", "patching", "verifying")
        self.machine.add_transition("fail", list(SEQUENCE[:-1]), "failed")
        self.machine.add_transition("skip", ["pending", "checking", "failed"], "skipped")
        for state in SEQUENCE[1:-1]:
            self.machine.add_transition(f"retry_{state}", "failed", state)
        self._previous = "pending"

    @property
    def host(self) -> str:
        return self.step.host

    @property
    def name(self) -> str:
        return self.step.host_name

    def restore_state(self, state: str, failed_in: str | None = None) -> None:
        """Put the machine where the journal says it was, without recording anything."""
        self.machine.set_state(state)
        self._previous = state
        self.failed_in = failed_in

    def _record(self, event: Any) -> None:
        detail: dict[str, Any] = {}
        if self.state == "failed":
            detail = {"failed_in": self.failed_in, "error": self.reason}
        elif self.reason:
            detail = {"reason": self.reason}
        # Journal first: if we die during the action, resume knows where we were.
        self.ctx.journal.record_transition(
            self.ctx.run_id, self.host, self.name, self.state, self._previous, detail
        )
        self.ctx.bus.emit(
            HostStateChanged(
                self.ctx.run_id,
                host=self.host,
                host_name=self.name,
                state=self.state,
                previous=self._previous,
                reason=self.reason,
            )
        )
        self._previous = self.state
        self.reason = ""

    # -- the engine -----------------------------------------------------------------------

    async def run(self, gate: Callable[[], Any]) -> str:
        """Drive the host to done (or failed/skipped); `gate` waits while the run is paused."""
        if self.state == "failed" and self.failed_in:
            getattr(self, f"retry_{self._retry_from()}")()
        if self.state == "pending":
            self.advance()
        while self.state not in ("done", "failed", "skipped"):
            await gate()
            if self.ctx.cancelled and self.state in ("checking",):
                self.reason = "run aborted before this host started"
                self.skip()
                break
            state = self.state
            started = time.monotonic()
            try:
                self._check_aborted(state)
                detail = await getattr(self, f"_do_{state}")()
                self._check_aborted(state)
            except HostSkipped as skipped:
                self._emit_result(state, started, ok=True, detail=str(skipped))
                self.reason = str(skipped)
                self.skip()
                break
            except (HostFailed, DriverError, RemoteError) as error:
                failure = (
                    error
                    if isinstance(error, HostFailed)
                    else HostFailed(error.message, getattr(error, "code", ""))
                )
                self.error = failure
                self.failed_in = state
                self._emit_result(state, started, ok=False, error=failure)
                if state in BEFORE_PATCH:
                    failure.message += await self._back_in_service()
                self.reason = f"{state}: {failure.message}"
                self.fail()
                break
            self._emit_result(state, started, ok=True, detail=detail or "")
            if self.state == state:  # an action may have moved the machine itself
                self.advance()
        return self.state

    def _check_aborted(self, state: str) -> None:
        """An abort before the patch stops here: the host goes back in service (run)."""
        if self.ctx.cancelled and state in ("disabling", "evacuating"):
            raise HostFailed("the run was aborted before this host's patch", "ABORTED")

    def _retry_from(self) -> str:
        """The state a failed host starts again from when the run resumes."""
        if self.failed_in in BEFORE_PATCH:
            # Before the patch, a failed host was put back in service: start it over.
            return "checking"
        old = self.ctx.journal.recall(self.ctx.run_id, self.host, CAME_BACK_AT)
        if self.failed_in == "verifying" and old is not None:
            # Verifying again would fail again: patch and reboot it again, after disabling
            # and emptying it (xapi enabled it when it came back, VMs may have arrived).
            self.reason = f"it came back at version {old}: patched and rebooted again"
            return "disabling"
        return self.failed_in or "checking"

    async def _back_in_service(self) -> str:
        """Nothing was patched: enable the host again and restart what we stopped on it."""
        try:
            await self.ctx.call(self.ctx.driver.enable, self.host)
            started = await self._start_stopped(await self.ctx.snapshot(self.host))
        except (DriverError, RemoteError) as error:
            return f"; could not put {self.name} back in service: {error.message}"
        restarted = f", {started} stopped VM(s) started again" if started else ""
        return f"; {self.name} is enabled again, nothing was patched{restarted}"

    def _emit_result(
        self,
        state: str,
        started: float,
        ok: bool,
        detail: str = "",
        error: HostFailed | None = None,
    ) -> None:
        self.ctx.bus.emit(
            ActionResult(
                self.ctx.run_id,
                host=self.host,
                host_name=self.name,
                state=state,
                ok=ok,
                seconds=time.monotonic() - started,
                detail=detail,
                error=error.message if error else "",
                code=error.code if error else "",
            )
        )

    # -- the actions, one per state -------------------------------------------------------

    async def _do_checking(self) -> str:
        pool = await self.ctx.snapshot(self.host)
        host = pool.host(self.host)
        target = self.ctx.policy.target_version
        if not host.live:
            raise HostFailed(f"{self.name} is not live: bring it back before upgrading it")
        # Before anything moves: a host we cannot patch is not disabled, emptied and its
        # pinned VMs stopped, only to fail at the patch.
        remote = self.ctx.remotes.get(self.host)
        if remote is not None and not await self.ctx.call(self.ctx.patcher.reachable, remote):
            raise HostFailed(
                f"{self.name} does not answer SSH at {remote.address}:{remote.port}: fix SSH"
                " before it is upgraded",
                "HOST_UNREACHABLE",
            )
        pinned = [vm for vm in pool.resident(self.host) if vm.blockers]
        if pinned and self.ctx.policy.unmovable == "skip-host":
            names = ", ".join(vm.name for vm in pinned)
            raise HostSkipped(f"VMs that cannot move ({names}); policy skip-host")
        if pinned and self.ctx.policy.unmovable == "fail":
            vm = pinned[0]
            raise HostFailed(
                f"VM {vm.name} cannot move ({vm.blockers[0].reason}): set rollup_unmovable"
                " to shutdown-restart or skip-host, or move it by hand",
                vm.blockers[0].code,
            )
        self._assert_room(pool)
        planned = {move.vm for move in self.step.evacuate}
        actual = {vm.id for vm in pool.resident(self.host) if not vm.blockers}
        if planned != actual:
            extra = len(actual - planned)
            gone = len(planned - actual)
            self.ctx.bus.emit(
                PlanDivergence(
                    self.ctx.run_id,
                    host=self.host,
                    host_name=self.name,
                    detail=f"{extra} VM(s) arrived and {gone} left since planning;"
                    " evacuation re-placed from the pool as it is now",
                )
            )
        if self.ctx.policy.pre_host_playbook:
            await self._play(self.ctx.policy.pre_host_playbook, "pre-host hook")
        return f"{len(actual)} VM(s) to move" + (f", target {target}" if target else "")

    def _assert_room(self, pool: Pool) -> None:
        """Refuse to take a host out of service whose VMs have nowhere to go right now."""
        trial = Ledger()
        for vm in sorted(pool.resident(self.host), key=lambda v: (-v.memory, v.name)):
            if vm.blockers:
                continue
            if choose_destination(pool, vm, trial, avoid=self.batch_hosts) is None:
                raise HostFailed(
                    f"not enough room to evacuate {self.name} now: no host has"
                    f" {vm.memory / 2**30:.1f} GiB free for {vm.name} (a host the plan"
                    " counted on is out of service or fuller than planned); it stays in service",
                    "HOST_NOT_ENOUGH_FREE_MEMORY",
                )

    async def _do_disabling(self) -> str:
        await self.ctx.call(self.ctx.driver.disable, self.host)
        return ""

    async def _do_evacuating(self) -> str:
        moved = 0
        attempts = 3
        for attempt in range(attempts + 1):
            self._check_aborted("evacuating")
            pool = await self.ctx.snapshot(self.host)
            movable = [vm for vm in pool.resident(self.host) if not vm.blockers]
            if not movable:
                # Pinned VMs stop last: a failed evacuation stops nothing, and their
                # downtime does not include the others' migrations.
                await self._stop_pinned(pool)
                return f"{moved} VM(s) moved"
            if attempt == attempts:
                break
            planned = {move.vm: move.dest for move in self.step.evacuate}
            failures = await self._migrate_all(pool, movable, planned)
            moved += len(movable) - len(failures)
            if failures and attempt == attempts - 1:
                vm, error = failures[0]
                raise HostFailed(
                    f"could not evacuate {vm.name}: {error.message}"
                    f" ({len(failures)} VM(s) still on {self.name}, all running)",
                    error.code,
                )
        raise HostFailed(f"{self.name} still has running VMs after evacuation")

    async def _stop_pinned(self, pool: Pool) -> None:
        for vm in [vm for vm in pool.resident(self.host) if vm.blockers]:
            # Only shutdown-restart reaches here with pinned VMs (checking refused the rest).
            self.ctx.journal.note(self.ctx.run_id, self.host, f"stopped:{vm.id}", vm.name)
            self.ctx.bus.emit(
                Message(
                    self.ctx.run_id,
                    level="warning",
                    text=f"{self.name}: shutting down {vm.name} ({vm.blockers[0].reason});"
                    " it starts again here after the upgrade",
                    host=self.host,
                )
            )
            await self.ctx.call(self.ctx.driver.shutdown_vm, vm.id)

    async def _migrate_all(
        self, pool: Pool, vms: list[VM], planned: Mapping[str, str]
    ) -> list[tuple[VM, DriverError]]:
        """Move `vms` off this host, planned destinations first; returns what failed."""
        limit = asyncio.Semaphore(max(1, self.ctx.policy.parallel_migrations))
        failures: list[tuple[VM, DriverError]] = []
        avoid = set(self.batch_hosts)
        # Reservations stay until every migration of this round has landed: a snapshot
        # taken meanwhile by another host of the batch would not show them all yet.
        reserved: list[tuple[str, int]] = []

        async def one(vm: VM) -> None:
            async with limit:
                if self.ctx.cancelled:
                    return  # aborted: no new migration starts; those in flight land
                dest = choose_destination(
                    pool, vm, self.ctx.ledger, avoid=avoid, preferred=planned.get(vm.id)
                )
                if dest is None:
                    failures.append(
                        (
                            vm,
                            DriverError(
                                f"no host has {vm.memory / 2**30:.1f} GiB free for it",
                                "HOST_NOT_ENOUGH_FREE_MEMORY",
                            ),
                        )
                    )
                    return
                reserved.append((dest, vm.memory))
                try:
                    await self._migrate(pool, vm, dest)
                except DriverError as error:
                    failures.append((vm, error))

        try:
            await asyncio.gather(*(one(vm) for vm in sorted(vms, key=lambda v: -v.memory)))
        finally:
            for dest, memory in reserved:
                self.ctx.ledger.release(dest, memory)
        return failures

    async def _migrate(self, pool: Pool, vm: VM, dest: str) -> None:
        dest_name = pool.host(dest).name
        source = vm.host or self.host

        def progress(value: float, status: str = "running", error: str = "") -> None:
            self.ctx.bus.emit(
                MigrationProgress(
                    self.ctx.run_id,
                    host=self.host,
                    vm=vm.id,
                    vm_name=vm.name,
                    source=source,
                    dest=dest,
                    dest_name=dest_name,
                    progress=value,
                    status=status,
                    error=error,
                )
            )

        progress(0.0, "started")
        try:
            await self.ctx.call(self.ctx.driver.migrate, vm.id, dest, progress)
        except MigrationRefused as error:
            progress(0.0, "failed", error.message)
            raise
        self.ctx.migrations += 1
        progress(1.0, "done")

    async def _do_patching(self) -> str:
        result = await self._play(self.ctx.policy.playbook, "patch")
        self.ctx.journal.note(self.ctx.run_id, self.host, "reboot_required", result.reboot_required)
        # A host that came back at its old version reboots whatever the playbook says:
        # the update is installed, the boot is what failed.
        again = self.ctx.journal.recall(self.ctx.run_id, self.host, CAME_BACK_AT) is not None
        if not result.reboot_required and self.ctx.policy.reboot == "if-required" and not again:
            self.reason = "the patch needs no reboot"
            self.skip_reboot()
            return "no reboot needed"
        return "reboot required" if result.reboot_required else ""

    async def _play(self, playbook: str, what: str) -> PatchResult:
        remote = self.ctx.remotes.get(self.host)
        if remote is None:
            raise HostFailed(f"{self.name} has no inventory entry to reach it by SSH")

        def on_task(task: str, status: str, message: str) -> None:
            self.ctx.bus.emit(
                AnsibleTask(
                    self.ctx.run_id,
                    host=self.host,
                    host_name=self.name,
                    playbook=playbook,
                    task=task,
                    status=status,
                    message=message,
                )
            )

        extravars = {
            "rollup_run_id": self.ctx.run_id,
            "rollup_host_name": self.name,
        }
        if self.ctx.policy.target_version:
            extravars["rollup_target_version"] = self.ctx.policy.target_version
        result: PatchResult = await self.ctx.call(
            self.ctx.patcher.play, remote, playbook, extravars, on_task, self._is_cancelled
        )
        if not result.ok:
            where = f" at task {result.failed_task!r}" if result.failed_task else ""
            raise HostFailed(
                f"{what} playbook failed{where}: {result.message}"
                + (f" (full output: {result.output_file})" if result.output_file else ""),
                "PLAYBOOK_FAILED",
                result.output_tail,
            )
        return result

    def _is_cancelled(self) -> bool:
        return self.ctx.cancelled

    async def _do_rebooting(self) -> str:
        journal, run_id = self.ctx.journal, self.ctx.run_id
        before = journal.recall(run_id, self.host, "boot_mark_before")
        pool = await self.ctx.snapshot(self.host)
        host = pool.host(self.host)
        if before is None:
            before = host.boot_mark
            journal.note(run_id, self.host, "boot_mark_before", before)
        if host.boot_mark == before and host.live:
            # Not rebooted yet (or we died before asking): the host is disabled and empty.
            await self.ctx.call(self.ctx.driver.reboot, self.host)
        timeout = self.ctx.policy.host_timeout_seconds
        back = await self.ctx.call(self.ctx.driver.wait_back, self.host, before, timeout)
        journal.forget(run_id, self.host, "boot_mark_before")
        journal.forget(run_id, self.host, CAME_BACK_AT)
        return f"back at {back.version}"

    async def _do_verifying(self) -> str:
        pool = await self.ctx.snapshot(self.host)
        host = pool.host(self.host)
        target = self.ctx.policy.target_version
        if not host.live:
            raise HostFailed(f"{self.name} is not live after its reboot")
        if target and version_key(host.version) < version_key(target):
            self.ctx.journal.note(self.ctx.run_id, self.host, CAME_BACK_AT, host.version)
            raise HostFailed(
                f"{self.name} came back at version {host.version}, expected {target}:"
                " check the patch output and what the host boots; resume patches and"
                " reboots it again",
                "VERSION_MISMATCH",
            )
        remote = self.ctx.remotes.get(self.host)
        if remote is not None and not await self.ctx.call(self.ctx.patcher.reachable, remote):
            raise HostFailed(f"{self.name} is back in the pool but does not answer SSH")
        return f"running {host.version}"

    async def _do_enabling(self) -> str:
        await self.ctx.call(self.ctx.driver.enable, self.host)
        return ""

    async def _do_restoring(self) -> str:
        pool = await self.ctx.snapshot(self.host)
        # The VMs we shut down can run nowhere else: they start first, before the VMs
        # coming back take the memory they need (those can stay where they run).
        started = await self._start_stopped(pool)
        if started:
            pool = await self.ctx.snapshot(self.host)
        moved, left = await self._return_vms(pool)
        if left:
            self.ctx.bus.emit(
                Message(
                    self.ctx.run_id,
                    level="warning",
                    text=f"{self.name}: {len(left)} VM(s) stay where they run: " + "; ".join(left),
                    host=self.host,
                )
            )
        if self.ctx.policy.post_host_playbook:
            await self._play(self.ctx.policy.post_host_playbook, "post-host hook")
        return f"{moved} VM(s) back, {started} restarted"

    async def _return_vms(self, pool: Pool) -> tuple[int, list[str]]:
        """The plan's returns, in parallel: `parallel_migrations` at once per source host,
        as evacuations go (returns come from many hosts, so they overlap well)."""
        limits: dict[str, asyncio.Semaphore] = {}
        left: list[str] = []
        moved = 0

        async def one(move: Move) -> None:
            nonlocal moved
            vm = _find(pool, move.vm)
            if vm is None or not vm.running or vm.host == move.dest:
                return
            source = vm.host or ""
            limit = limits.setdefault(
                source, asyncio.Semaphore(max(1, self.ctx.policy.parallel_migrations))
            )
            async with limit:
                dest = choose_destination(
                    pool, vm, self.ctx.ledger, avoid=set(), preferred=move.dest, only=move.dest
                )
                if dest is None:
                    left.append(f"{move.vm_name} (not enough memory on {self.name})")
                    return
                try:
                    await self._migrate(pool, vm, dest)
                    moved += 1
                except DriverError as error:
                    # One VM that cannot go home must not fail the host: it runs where it is.
                    left.append(f"{move.vm_name} ({error.message})")
                finally:
                    self.ctx.ledger.release(dest, vm.memory)

        await asyncio.gather(*(one(move) for move in self.step.restore))
        return moved, left

    async def _start_stopped(self, pool: Pool) -> int:
        started = 0
        for vm in pool.vms:
            if self.ctx.journal.recall(self.ctx.run_id, self.host, f"stopped:{vm.id}") is None:
                continue
            if vm.power_state == "Halted":
                await self.ctx.call(self.ctx.driver.start_vm, vm.id, self.host)
                started += 1
            self.ctx.journal.forget(self.ctx.run_id, self.host, f"stopped:{vm.id}")
        return started


def _find(pool: Pool, vm_id: str) -> VM | None:
    for vm in pool.vms:
        if vm.id == vm_id:
            return vm
    return None
