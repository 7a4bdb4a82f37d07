"""Rollout: one run of a plan over a pool — batches, gates, the lock and HA around them.

States: planned → running ⇄ paused → awaiting_approval (canary gate) → completed |
failed | aborted. The TUI and the pipeline mode drive the same object: they subscribe to
its events and send it commands (pause, resume, approve, abort, skip, retry), from any
thread or, through the journal, from another process (`rollup approve RUN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from transitions import Machine

from rollup.drivers import HaState
from rollup.errors import OUTCOME_EXIT, DriverError
from rollup.model import Plan
from rollup.run import prestage
from rollup.run.context import RunContext
from rollup.run.events import Message, RunFinished, RunStateChanged
from rollup.run.failures import (
    over_budget,
    say_what_abort_left,
    say_what_is_left,
    within_budget,
)
from rollup.run.host_upgrade import HostUpgrade
from rollup.run.journal import Transition
from rollup.run.options import RunOptions, in_window, window_text
from rollup.run.pool_guard import PoolGuard
from rollup.run.vm_restarts import restart_guided_vms
from rollup.text.plurals import count, verb

RUN_STATES = ("planned", "running", "paused", "awaiting_approval", "completed", "failed", "aborted")


class Rollout:
    state: str

    def __init__(
        self,
        ctx: RunContext,
        plan: Plan,
        options: RunOptions,
        resumed: dict[str, Transition] | None = None,
    ) -> None:
        self.ctx = ctx
        self.plan = plan
        self.options = options
        self.guard = PoolGuard(ctx, options, self._say, self.request)
        self.hosts: dict[str, HostUpgrade] = {}
        for batch in plan.batches:
            members = frozenset(step.host for step in batch.steps)
            for step in batch.steps:
                upgrade = HostUpgrade(ctx, step, members)
                last = (resumed or {}).get(step.host)
                if last is not None:
                    upgrade.restore_state(last.state, last.detail.get("failed_in"))
                self.hosts[step.host] = upgrade
        self.machine = Machine(
            model=self,
            states=list(RUN_STATES),
            initial="planned",
            auto_transitions=False,
            after_state_change="_record",
            send_event=True,
        )
        self.machine.add_transition("start", ["planned", "paused"], "running")
        self.machine.add_transition("pause", "running", "paused")
        self.machine.add_transition("unpause", "paused", "running")
        self.machine.add_transition("gate", "running", "awaiting_approval")
        self.machine.add_transition("approve", "awaiting_approval", "running")
        self.machine.add_transition("complete", "running", "completed")
        self.machine.add_transition("fail", ["running", "paused"], "failed")
        self.machine.add_transition("stop", list(RUN_STATES[:4]), "aborted")
        self._previous = "planned"
        self._reason = ""
        self._wake = asyncio.Event()
        self._pause_requested = False
        self._approved = False
        self._canary_approved = False
        self._detach = False
        self._detach_reason = ""  # why the run detached, when not by the operator
        self._skip: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()

    # -- commands (thread-safe; the TUI and `rollup approve` use these) ------------------

    def request(self, command: str, host: str | None = None, reason: str = "") -> None:
        """pause | resume | approve | abort | skip HOST | retry HOST | detach [reason]."""
        if self._loop is None:
            self._apply(command, host, reason)
        else:
            self._loop.call_soon_threadsafe(self._apply, command, host, reason)

    def _apply(self, command: str, host: str | None, reason: str = "") -> None:
        if command == "pause":
            self._pause_requested = True
        elif command == "resume":
            self._pause_requested = False
        elif command == "approve":
            self._approved = True
        elif command == "abort":
            self.ctx.cancelled = True
        elif command == "detach":
            self._detach = True
            self._detach_reason = self._detach_reason or reason
            self._pause_requested = True
        elif command == "skip" and host:
            self._skip.add(host)
        elif command == "retry" and host:
            self._skip.discard(host)
            self._pause_requested = False
        self._wake.set()

    # -- recording ------------------------------------------------------------------------

    def _record(self, event: object) -> None:
        self.ctx.journal.set_run_state(self.ctx.run_id, self.state)
        self.ctx.bus.emit(
            RunStateChanged(
                self.ctx.run_id, state=self.state, previous=self._previous, reason=self._reason
            )
        )
        self._previous = self.state
        self._reason = ""

    def _say(self, text: str, level: str = "info", host: str | None = None) -> None:
        self.ctx.bus.emit(Message(self.ctx.run_id, level=level, text=text, host=host))

    # -- the engine -----------------------------------------------------------------------

    async def execute(self) -> RunFinished:
        self._loop = asyncio.get_running_loop()
        self._reason = "resumed" if self._previous != "planned" else ""
        self.start()
        self._take_commands()  # skip or retry sent while no process carried the run
        await self.ctx.call(self.ctx.driver.lock, self.guard.lock_record(), self.options.break_lock)
        ha: HaState | None = None
        refresher = asyncio.create_task(self.guard.refresh_lock())
        listener = asyncio.create_task(self._listen())
        try:
            if self.options.approve_start and not await self._approval(
                f"the plan waits for approval: `rollup approve {self.ctx.run_id}` starts it"
            ):
                outcome, message = (
                    self._aborted()
                    if self.ctx.cancelled
                    else self._paused_by("detached before the start: nothing was changed")
                )
                return self._finish(outcome, message)
            fresh = any(u.state == "pending" for u in self.hosts.values())
            if fresh and (closed := self._window_closed()):
                return self._finish(*self._paused_by(closed))  # nothing changed yet
            ha = await self.guard.pause_ha()
            waiting = {host for host, upgrade in self.hosts.items() if upgrade.state == "pending"}
            await prestage.download_everywhere(self.ctx, self.plan, waiting)
            outcome, message = await self._run_batches()
        except DriverError as error:
            outcome, message = "paused", f"pool error: {error.message}"
            if self.state == "running":
                self._reason = message
                self.pause()
        finally:
            refresher.cancel()
            listener.cancel()
            if ha is not None:
                await self.guard.restore_ha(ha)
            await self.guard.unlock()
        return self._finish(outcome, message)

    async def _listen(self) -> None:
        """Commands from other processes (`rollup abort RUN`) are taken during a step too,
        so an abort stops a playbook or an evacuation at once, not when it ends."""
        while True:
            await asyncio.sleep(self.options.command_poll_seconds)
            self._take_commands()

    async def _run_batches(self) -> tuple[str, str]:
        for batch in self.plan.batches:
            upgrades = [self.hosts[step.host] for step in batch.steps]
            pending = [u for u in upgrades if u.state not in ("done", "skipped")]
            if not pending:
                continue
            for upgrade in pending:
                if upgrade.host in self._skip and upgrade.state in ("pending", "failed"):
                    upgrade.reason = "skipped by the operator"
                    upgrade.skip()
            pending = [u for u in pending if u.state not in ("done", "skipped")]
            if not pending:
                continue
            fresh = any(u.state == "pending" for u in pending)
            if fresh and (closed := self._window_closed()):
                return self._paused_by(closed)
            if fresh and not await self._canary_gate():
                if self.ctx.cancelled:
                    return self._aborted()
                return self._paused_by(
                    f"detached at the canary gate: `rollup resume {self.ctx.run_id}`"
                    " asks for the approval again"
                )
            await self._gate()
            if self.ctx.cancelled:
                return self._aborted()
            if self._detach:
                return self._paused_by(self._detach_reason or "detached by the operator")
            await asyncio.gather(*(u.run(self._gate) for u in pending))
            failed = [u for u in upgrades if u.state == "failed"]
            if self.ctx.cancelled:
                return self._aborted()
            if failed:
                outcome = await self._after_failure(failed)
                if outcome is not None:
                    return outcome
        failed = [u for u in self.hosts.values() if u.state == "failed"]
        if failed:
            said = f"{count(len(failed), 'host')} failed: {', '.join(u.name for u in failed)}"
            return self._transition(self.fail, "failed", said)
        await restart_guided_vms(self.ctx, self._say)
        return self._transition(self.complete, "completed", self._summary())

    async def _after_failure(self, failed: list[HostUpgrade]) -> tuple[str, str] | None:
        first = failed[0]
        where = first.failed_in or "?"
        evidence = first.error.message if first.error else first.reason
        say_what_is_left(self.ctx, failed, self._say)
        total = sum(1 for u in self.hosts.values() if u.state == "failed")
        within = within_budget(self.ctx.policy, total)
        if within:
            self._say(within, "warning")
            return None
        policy = self.ctx.policy.on_failure
        if policy == "abort":
            return self._transition(
                self.fail, "failed", f"{first.name} failed while {where}; policy on-failure=abort"
            )
        cause = f"{first.name} failed while {where}: {evidence}"
        if self.ctx.policy.max_failed_hosts is not None:  # it went on until the budget was spent
            cause = f"{over_budget(self.ctx.policy, total)}; last, {cause}"
        message = (
            f"{cause}. Fix the cause, then run `rollup resume {self.ctx.run_id}` (or"
            f" `rollup skip {self.ctx.run_id} {first.name}` to leave it out)"
        )
        if self.options.wait_when_paused:
            self._reason = message
            self.pause()
            self._pause_requested = True
            await self._gate()
            if self.ctx.cancelled:
                return self._aborted()
            if self._detach:
                return "paused", message
            for upgrade in failed:
                if upgrade.host in self._skip:
                    upgrade.reason = "skipped by the operator"
                    upgrade.skip()
                else:
                    await upgrade.run(self._gate)
            still = [u for u in failed if u.state == "failed"]
            return await self._after_failure(still) if still else None
        return self._paused_by(message)

    def _transition(self, trigger: Any, outcome: str, reason: str) -> tuple[str, str]:
        if self.state == "paused" and outcome != "paused":
            # Detached during the last batch: its hosts finished all the same.
            self._reason = "the batch under way finished"
            self.unpause()
        # The reason travels with the transition's event; `_record` clears it after.
        self._reason = reason
        trigger()
        return outcome, reason

    def _window_closed(self) -> str:
        """Why no new host may start now: the maintenance window is closed ("": open)."""
        window = self.ctx.policy.window
        if in_window(window, self.options.clock()):
            return ""
        return (
            f"the maintenance window {window_text(window)} is closed; no new host starts"
            f" outside it. Run `rollup resume {self.ctx.run_id}` in the next window"
        )

    def _paused_by(self, reason: str) -> tuple[str, str]:
        if self.state == "running":
            return self._transition(self.pause, "paused", reason)
        return "paused", reason

    def _aborted(self) -> tuple[str, str]:
        say_what_abort_left(self.ctx, list(self.hosts.values()), self._say)
        return self._transition(
            self.stop, "aborted", "aborted by the operator; the pool is left safe"
        )

    async def _canary_gate(self) -> bool:
        canary = self.ctx.policy.canary
        done = sum(1 for u in self.hosts.values() if u.state == "done")
        if not canary or done < canary or self._canary_approved:
            return True
        if self.options.yes:
            self._canary_approved = True
            self._say(f"{count(done, 'canary host')} done; approved by --yes")
            return True
        self._canary_approved = await self._approval(
            f"{count(done, 'canary host')} done: check {verb(done, 'it', 'them')}, then approve"
            f" with `rollup approve {self.ctx.run_id}` (or `y` in the TUI)"
        )
        return self._canary_approved

    async def _approval(self, reason: str) -> bool:
        """Wait in awaiting_approval until approved (True), or aborted/detached (False)."""
        self._approved = False
        self._reason = reason
        self.gate()
        while not self._approved and not self.ctx.cancelled and not self._detach:
            await self._sleep()
            self._take_commands()
        if not self._approved:
            return False
        self._reason = "approved"
        self.approve()
        return True

    async def _gate(self) -> None:
        """Between steps: honour pause requests and commands from other processes."""
        self._take_commands()
        if not self._pause_requested or self.ctx.cancelled:
            return
        if self.state == "running":
            self._reason = self._detach_reason or "paused by the operator"
            self.pause()
        while self._pause_requested and not self.ctx.cancelled and not self._detach:
            await self._sleep()
            self._take_commands()
        if self.state == "paused" and not self._detach and not self.ctx.cancelled:
            self._reason = "resumed by the operator"
            self.unpause()

    async def _sleep(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.options.command_poll_seconds)

    def _take_commands(self) -> None:
        if self.ctx.bus.failure and not self._detach_reason:
            # The journal stopped recording the run's events: resume could not trust it.
            # Stop as a detach does: the steps under way end, no new host starts.
            self._apply(
                "detach",
                None,
                f"the journal stopped recording this run: {self.ctx.bus.failure}; no new"
                f" host starts. Free disk space or fix the state directory"
                f" {self.ctx.journal.dir}, then run `rollup resume {self.ctx.run_id}`",
            )
        for command, host in self.ctx.journal.take_commands(self.ctx.run_id):
            self._apply(command, host)

    def _summary(self) -> str:
        done = sum(1 for u in self.hosts.values() if u.state == "done")
        skipped = len(self.plan.skipped) + sum(
            1 for u in self.hosts.values() if u.state == "skipped"
        )
        # A run of major upgrades (or of a pool that cannot say what is pending) upgrades
        # its hosts; one of pending updates patches them.
        patch = all(s.pending is not None and not s.upgrade for s in self.plan.steps)
        return (
            f"{count(done, 'host')} {'patched' if patch and self.plan.steps else 'upgraded'},"
            f" {skipped} skipped,"
            f" {count(self.ctx.migrations, 'live migration')},"
            f" {time.monotonic() - self._started:.0f}s"
        )

    def _finish(self, outcome: str, message: str) -> RunFinished:
        if self._detach_reason and self._detach_reason not in message:
            message = f"{message}; {self._detach_reason}"  # e.g. stopped at the canary gate
        self.ctx.journal.set_run_state(self.ctx.run_id, self.state, outcome, message)
        states = [u.state for u in self.hosts.values()]
        finished = RunFinished(
            self.ctx.run_id,
            outcome=outcome,
            exit_code=OUTCOME_EXIT[outcome],
            message=message,
            hosts_done=states.count("done"),
            hosts_failed=states.count("failed"),
            hosts_skipped=states.count("skipped") + len(self.plan.skipped),
            migrations=self.ctx.migrations,
            seconds=time.monotonic() - self._started,
        )
        self.ctx.bus.emit(finished)
        return finished
