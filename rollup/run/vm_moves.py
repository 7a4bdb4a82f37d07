"""Moving one host's VMs: out before its patch, back after it, and the pinned ones.

Every move goes to a destination chosen against the pool as it is now (the plan's
first), through the run's ledger, so hosts of one batch never promise the same memory
twice; failures come back as data, for the host's step to decide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from rollup.errors import DriverError, HostFailed, HostSkipped, MigrationRefused
from rollup.model import VM, Move, Pool
from rollup.run.context import RunContext
from rollup.run.events import Message, MigrationProgress, PlanDivergence
from rollup.run.placement_live import Ledger, choose_destination
from rollup.text.plurals import count, noun, verb


class VmMoves:
    def __init__(self, ctx: RunContext, host: str, name: str, batch_hosts: frozenset[str]) -> None:
        self.ctx = ctx
        self.host = host
        self.name = name
        self.batch_hosts = batch_hosts

    def assert_room(self, pool: Pool) -> None:
        """Refuse to take a host out of service whose VMs have nowhere to go right now."""
        trial = Ledger()
        for vm in sorted(pool.resident(self.host), key=lambda v: (-v.memory, v.name)):
            if vm.blockers:
                continue
            headroom = self.ctx.policy.headroom
            if choose_destination(pool, vm, trial, self.batch_hosts, headroom=headroom) is None:
                raise HostFailed(
                    f"not enough room to evacuate {self.name} now: no host has"
                    f" {vm.memory / 2**30:.1f} GiB free for {vm.name} (a host the plan"
                    " counted on is out of service or fuller than planned); it stays in service",
                    "HOST_NOT_ENOUGH_FREE_MEMORY",
                )

    async def stop_pinned(self, pool: Pool) -> None:
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

    async def migrate_all(
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
                    pool,
                    vm,
                    self.ctx.ledger,
                    avoid=avoid,
                    preferred=planned.get(vm.id),
                    headroom=self.ctx.policy.headroom,
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
                    await self.migrate(pool, vm, dest)
                except DriverError as error:
                    failures.append((vm, error))

        try:
            await asyncio.gather(*(one(vm) for vm in sorted(vms, key=lambda v: -v.memory)))
        finally:
            for dest, memory in reserved:
                self.ctx.ledger.release(dest, memory)
        return failures

    async def migrate(self, pool: Pool, vm: VM, dest: str) -> None:
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

    async def return_vms(self, pool: Pool, returns: Sequence[Move]) -> tuple[int, list[str]]:
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
                    await self.migrate(pool, vm, dest)
                    moved += 1
                except DriverError as error:
                    # One VM that cannot go home must not fail the host: it runs where it is.
                    left.append(f"{move.vm_name} ({error.message})")
                finally:
                    self.ctx.ledger.release(dest, vm.memory)

        await asyncio.gather(*(one(move) for move in returns))
        return moved, left

    async def start_stopped(self, pool: Pool) -> int:
        started = 0
        for vm in pool.vms:
            if self.ctx.journal.recall(self.ctx.run_id, self.host, f"stopped:{vm.id}") is None:
                continue
            if vm.power_state == "Halted":
                await self.ctx.call(self.ctx.driver.start_vm, vm.id, self.host)
                started += 1
            self.ctx.journal.forget(self.ctx.run_id, self.host, f"stopped:{vm.id}")
        return started

    def check(self, pool: Pool, planned_moves: Sequence[Move]) -> int:
        """Before anything moves: the policy for VMs that cannot move, room for the others
        now, and the plan's moves against what runs here now (a divergence is said);
        how many VMs are to move."""
        pinned = [vm for vm in pool.resident(self.host) if vm.blockers]
        if pinned and self.ctx.policy.unmovable == "skip-host":
            names = ", ".join(vm.name for vm in pinned)
            raise HostSkipped(
                f"{noun(len(pinned), 'VM')} that cannot move ({names}); policy skip-host"
            )
        if pinned and self.ctx.policy.unmovable == "fail":
            vm = pinned[0]
            raise HostFailed(
                f"VM {vm.name} cannot move ({vm.blockers[0].reason}): set rollup_unmovable"
                " to shutdown-restart or skip-host, or move it by hand",
                vm.blockers[0].code,
            )
        self.assert_room(pool)
        planned = {move.vm for move in planned_moves}
        actual = {vm.id for vm in pool.resident(self.host) if not vm.blockers}
        if planned != actual:
            extra = len(actual - planned)
            gone = len(planned - actual)
            self.ctx.bus.emit(
                PlanDivergence(
                    self.ctx.run_id,
                    host=self.host,
                    host_name=self.name,
                    detail=f"{count(extra, 'VM')} arrived and {gone} left since planning;"
                    " evacuation re-placed from the pool as it is now",
                )
            )
        return len(actual)

    async def restore(self, moves: Sequence[Move]) -> str:
        """After the host's upgrade: what was stopped starts, the planned VMs come back."""
        pool = await self.ctx.snapshot(self.host)
        # The VMs we shut down can run nowhere else: they start first, before the VMs
        # coming back take the memory they need (those can stay where they run).
        started = await self.start_stopped(pool)
        if started:
            pool = await self.ctx.snapshot(self.host)
        moved, left = await self.return_vms(pool, moves)
        if left:
            stay = verb(len(left), "stays where it runs", "stay where they run")
            self.ctx.bus.emit(
                Message(
                    self.ctx.run_id,
                    level="warning",
                    text=f"{self.name}: {count(len(left), 'VM')} {stay}: " + "; ".join(left),
                    host=self.host,
                )
            )
        return f"{count(moved, 'VM')} back, {started} restarted"


def _find(pool: Pool, vm_id: str) -> VM | None:
    for vm in pool.vms:
        if vm.id == vm_id:
            return vm
    return None
