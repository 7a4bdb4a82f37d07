"""HostUpgrade: one host's way through disable → evacuate → patch → reboot → verify →
enable → restore, as a `transitions` state machine whose states are journaled.

Every state's action is idempotent — disabling a disabled host, evacuating an empty one,
waiting for a boot that already happened are no-ops — so after a crash `rollup resume`
re-enters the last journaled state and simply runs its action again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from transitions import Machine

from rollup.errors import DriverError, HostFailed, HostSkipped, RemoteError
from rollup.model import HostStep, version_key
from rollup.remote import PatchResult
from rollup.run import gates
from rollup.run.context import RunContext
from rollup.run.events import (
    HOST_STATES,
    SEQUENCE,
    ActionResult,
    HostStateChanged,
    Message,
)
from rollup.run.host_playbook import play_on_host
from rollup.run.host_updates import HostUpdates
from rollup.run.vm_moves import VmMoves
from rollup.text.plurals import count

# States in which a host is out of service because of us.
OUT_OF_SERVICE = ("patching", "rebooting", "verifying", "enabling")
# A failure in these states puts the host back in service: it was never patched.
BEFORE_PATCH = ("checking", "disabling", "evacuating")
# Journal note: a failed host was put back in service, nothing patched (its state then).
BACK_IN_SERVICE = "back_in_service"
# Journal note: the version a host came back at when it should have been upgraded.
CAME_BACK_AT = "came_back_at"


class HostUpgrade:
    """One host's state machine. The engine (`run`) drives it; transitions only record."""

    state: str

    def __init__(self, ctx: RunContext, step: HostStep, batch_hosts: frozenset[str]) -> None:
        self.ctx = ctx
        self.step = step
        self.batch_hosts = batch_hosts
        self.moves = VmMoves(ctx, step.host, step.host_name, batch_hosts)
        self.updates = HostUpdates(ctx, step)
        self.error: HostFailed | None = None
        self.failed_in: str | None = None
        self._attempts: dict[str, int] = {}  # retries spent, by state
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
        # A major upgrade's host patched after it runs the new release, in the same turn.
        self.machine.add_transition("patch_again", "verifying", "patching")
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
            # `rollup status` reads a host's last transition: the evidence goes with it.
            detail["evidence"] = list(self.error.evidence) if self.error else []
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
                    else HostFailed(error.message, getattr(error, "code", ""), error.evidence)
                )
                if await self._retried(state, started, failure):
                    continue
                self.error = failure
                self.failed_in = state
                self._emit_result(state, started, ok=False, error=failure)
                if state in BEFORE_PATCH or failure.untouched:
                    self.ctx.journal.note(self.ctx.run_id, self.host, BACK_IN_SERVICE, state)
                    failure.message += await self._back_in_service()
                self.reason = f"{state}: {failure.message}"
                self.fail()
                break
            self._emit_result(state, started, ok=True, detail=detail or "")
            if self.state == state:  # an action may have moved the machine itself
                self.advance()
        return self.state

    async def _retried(self, state: str, started: float, failure: HostFailed) -> bool:
        """A failed step tried again after a pause (rollup_retries, the delay doubling each
        time): said, with its evidence, and journaled as a failed attempt. False once the
        retries are spent, or for a failure no retry mends (an abort)."""
        tries = self._attempts.get(state, 0)
        if tries >= self.ctx.policy.retries or self.ctx.cancelled or failure.code == "ABORTED":
            return False
        self._attempts[state] = tries + 1
        delay = self.ctx.policy.retry_delay_seconds * 2**tries
        self._emit_result(state, started, ok=False, error=failure)
        self.ctx.bus.emit(
            Message(
                self.ctx.run_id,
                level="warning",
                text=f"{self.name}: {state} failed ({failure.message}); try"
                f" {tries + 2} of {self.ctx.policy.retries + 1} in {delay:.0f}s",
                host=self.host,
            )
        )
        await self.ctx.sleep(delay)
        return not self.ctx.cancelled

    def _check_aborted(self, state: str) -> None:
        """An abort before the patch stops here: the host goes back in service (run)."""
        if self.ctx.cancelled and state in ("disabling", "evacuating"):
            raise HostFailed("the run was aborted before this host's patch", "ABORTED")

    def _retry_from(self) -> str:
        """The state a failed host starts again from when the run resumes."""
        if self.failed_in in BEFORE_PATCH or self.ctx.journal.recall(
            self.ctx.run_id, self.host, BACK_IN_SERVICE
        ):
            # Nothing was patched and the host was put back in service: start it over.
            self.ctx.journal.forget(self.ctx.run_id, self.host, BACK_IN_SERVICE)
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
            started = await self.moves.start_stopped(await self.ctx.snapshot(self.host))
        except (DriverError, RemoteError) as error:
            return f"; could not put {self.name} back in service: {error.message}"
        restarted = f", {count(started, 'stopped VM')} started again" if started else ""
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
                evidence=error.evidence if error else (),
            )
        )

    # -- the actions, one per state -------------------------------------------------------

    async def _do_checking(self) -> str:
        pool = await self.ctx.snapshot(self.host)
        host = pool.host(self.host)
        target = self.ctx.policy.target_version
        if not host.live:
            raise HostFailed(f"{self.name} is not live: bring it back before upgrading it")
        pending = await self.updates.check()
        gated = await gates.wait_for(self.ctx, self.host, self.name, "before_host")
        pending = ", ".join(part for part in (pending, gated) if part)
        if self.updates.in_place:
            return f"{pending}: patched in place, its VMs stay"
        # Before anything moves: a host we cannot patch is not disabled, emptied and its
        # pinned VMs stopped, only to fail at the patch.
        remote = self.ctx.remotes.get(self.host)
        if remote is not None and not await self._answers_ssh():
            raise HostFailed(
                f"{self.name} does not answer SSH at {remote.address}:{remote.port}: fix SSH"
                " before it is upgraded",
                "HOST_UNREACHABLE",
            )
        movable = self.moves.check(pool, self.step.evacuate)
        if self.ctx.policy.pre_host_playbook:
            await self._play(self.ctx.policy.pre_host_playbook, "pre-host hook")
        moving = f"{count(movable, 'VM')} to move" + (f", target {target}" if target else "")
        return f"{pending}, {moving}" if pending else moving

    async def _do_disabling(self) -> str:
        if self.updates.in_place:
            return "in place: it stays enabled"
        await self.ctx.call(self.ctx.driver.disable, self.host)
        return ""

    async def _do_evacuating(self) -> str:
        if self.updates.in_place:
            return "in place: its VMs stay"
        moved = 0
        attempts = 3
        for attempt in range(attempts + 1):
            self._check_aborted("evacuating")
            pool = await self.ctx.snapshot(self.host)
            movable = [vm for vm in pool.resident(self.host) if not vm.blockers]
            if not movable:
                # Pinned VMs stop last: a failed evacuation stops nothing, and their
                # downtime does not include the others' migrations.
                await self.moves.stop_pinned(pool)
                return f"{count(moved, 'VM')} moved"
            if attempt == attempts:
                break
            planned = {move.vm: move.dest for move in self.step.evacuate}
            failures = await self.moves.migrate_all(pool, movable, planned)
            moved += len(movable) - len(failures)
            if failures and attempt == attempts - 1:
                vm, error = failures[0]
                raise HostFailed(
                    f"could not evacuate {vm.name}: {error.message}"
                    f" ({count(len(failures), 'VM')} still on {self.name}, all running)",
                    error.code,
                    error.evidence,  # the hypervisor's code and parameters, as it said them
                )
        raise HostFailed(f"{self.name} still has running VMs after evacuation")

    async def _do_patching(self) -> str:
        upgrade = await self.updates.upgrade()
        if upgrade:
            return upgrade  # the installer runs at the reboot
        if self.ctx.policy.update == "xapi" or self.updates.by_installer:
            detail, no_reboot = await self.updates.patch()
            if no_reboot:
                self.reason = no_reboot
                self.skip_reboot()
            elif self.updates.must_empty:
                # It was to stay in service; now it reboots: out of service and emptied
                # first, as its own checking, disabling and evacuating steps would have:
                # the policy for VMs that cannot move and the room for the others first.
                try:
                    self.moves.check(await self.ctx.snapshot(self.host), ())
                except HostSkipped as held:
                    raise HostFailed(
                        f"{self.name}'s updates are installed and now ask for a reboot, but"
                        f" it cannot be emptied: {held}; empty and reboot it by hand, then"
                        " resume",
                        "REBOOT_IN_PLACE",
                    ) from None
                await self.ctx.call(self.ctx.driver.disable, self.host)
                detail += f"; {await self._do_evacuating()}"
            return detail
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

    async def _answers_ssh(self) -> bool:
        """Whether the host answers SSH, where the run reaches it by SSH at all."""
        remote = self.ctx.remotes.get(self.host)
        if remote is None or not self.ctx.uses_ssh:
            return True
        return bool(await self.ctx.call(self.ctx.patcher.reachable, remote))

    async def _play(self, playbook: str, what: str) -> PatchResult:
        return await play_on_host(self.ctx, self.host, self.name, playbook, what)

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
        if not await self._answers_ssh():
            raise HostFailed(f"{self.name} is back in the pool but does not answer SSH")
        if await self.updates.after_upgrade():
            self.reason = f"upgraded to {host.version}: its updates are installed now"
            self.patch_again()
            return f"running {host.version}, updates pending"
        left = await self.updates.verify()
        return f"running {host.version}" + (f", {left}" if left else "")

    async def _do_enabling(self) -> str:
        await self.ctx.call(self.ctx.driver.enable, self.host)
        return ""

    async def _do_restoring(self) -> str:
        done = await self.moves.restore(self.step.restore)
        gated = await gates.wait_for(self.ctx, self.host, self.name, "after_host")
        done = f"{done}, {gated}" if gated else done
        if self.ctx.policy.post_host_playbook:
            await self._play(self.ctx.policy.post_host_playbook, "post-host hook")
        return done
