"""A host's updates during its turn: what is pending now, installing it, what must follow.

The plan recorded what each host reported pending (`HostStep.pending`) and, for
XenServer, the hash of the repository it read. In the host's turn:
- checking: pending is read again; a difference from the plan is a divergence, said
  with what was added and what went. Policy `planned` installs what was planned only
  (XCP-ng: those exact package builds; XenServer: the planned hash, refused by the pool
  if it changed), `latest` everything there is now. A host with nothing pending any more
  is skipped before anything moves;
- patching, the hypervisor's way (rollup_update: xapi): the driver installs, then the
  host's pending guidances say what follows: a reboot, a toolstack restart (done here,
  no reboot), or nothing;
- verifying: nothing planned is left pending (policy `latest`: nothing at all), and no
  mandatory guidance is left; updates published since planning are reported, left for
  the next run.
Hosts whose pool cannot tell what is pending (`step.pending` None) have none of this:
a target version and the playbook decide, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollup.drivers import Follow
from rollup.errors import DriverError, HostFailed, HostSkipped
from rollup.model import HostStep, Pending
from rollup.run.context import RunContext
from rollup.run.events import Message, PlanDivergence, StepActivity
from rollup.text.plurals import count, noun

REBOOT = "reboot_host"
TOOLSTACK = "restart_toolstack"
# Journal note: a host planned in place whose updates now need it emptied and rebooted.
MOVED_OUT = "moved_out"
# Journal note: a host planned in place whose install asked for a reboot after all.
EMPTY_AFTER_INSTALL = "empty_after_install"
# Journal notes of a major upgrade: the host runs the new release; its patches were
# installed after it, in the same evacuation.
UPGRADED = "upgraded"
PATCHED_AFTER = "patched_after_upgrade"


@dataclass(frozen=True)
class Next:
    """What must follow an install: "reboot", "toolstack" (restart it) or "none"."""

    action: str
    why: tuple[str, ...] = ()  # the guidances that ask for it


class HostUpdates:
    def __init__(self, ctx: RunContext, step: HostStep) -> None:
        self.ctx = ctx
        self.step = step
        moved_out = ctx.journal.recall(ctx.run_id, step.host, MOVED_OUT) is not None
        # Patched where it runs, its VMs left alone: as planned, unless what is pending
        # now needs more (policy latest, updates published since, a failed livepatch).
        self.in_place = step.in_place and not moved_out
        # Set when an install made an in-place host need emptying: patching empties it
        # (again, after a resume or a retry of patching).
        self.must_empty = (
            step.in_place
            and ctx.journal.recall(ctx.run_id, step.host, EMPTY_AFTER_INSTALL) is not None
        )

    @property
    def known(self) -> bool:
        return self.step.pending is not None

    @property
    def planned(self) -> tuple[str, ...]:
        assert self.step.pending is not None
        return tuple(update.label for update in self.step.pending.updates)

    async def pending_now(self) -> tuple[Pending, str]:
        """What the host has pending now, and the repository hash it was read with."""
        found = await self.ctx.call(self.ctx.driver.pending_updates, (self.step.host,))
        pending = found.hosts.get(self.step.host)
        if pending is None:
            raise HostFailed(
                f"{self.step.host_name} did not say what it has pending: is it live?",
                "NO_PENDING_LIST",
            )
        return pending, found.hash

    async def check(self) -> str:
        """At checking: compare with the plan; skip a host with nothing left to do."""
        if not self.known or self.step.upgrade:
            return ""
        now, hash_ = await self.pending_now()
        labels = tuple(update.label for update in now.updates)
        planned = self.planned
        added = [label for label in labels if label not in planned]
        gone = [label for label in planned if label not in labels]
        latest = self.ctx.policy.updates == "latest"
        moved_out = self.in_place and latest and (now.evacuate or now.reboot)
        if moved_out:
            # What is pending now needs the host emptied: it goes the usual way instead.
            self.in_place = False
            self.ctx.journal.note(self.ctx.run_id, self.step.host, MOVED_OUT, True)
        if added or gone or (self.ctx.updates_hash and hash_ and hash_ != self.ctx.updates_hash):
            self._diverged(added, gone, moved_out)
        if not labels:
            raise HostSkipped("nothing pending any more: installed since planning")
        if self.ctx.policy.updates == "planned" and not set(labels) & set(planned):
            raise HostSkipped("none of its planned updates is pending any more")
        return f"{count(len(labels), 'update')} pending"

    def _diverged(self, added: list[str], gone: list[str], moved_out: bool) -> None:
        parts = []
        if added:
            parts.append(
                f"{noun(len(added), 'update')} published since planning ({', '.join(added)})"
            )
        if gone:
            parts.append(
                f"{count(len(gone), 'planned update')} no longer pending ({', '.join(gone)})"
            )
        if not parts:
            parts.append("the pool's update repository changed since planning")
        if self.ctx.policy.updates == "planned":
            then = "installing what was planned only (rollup_updates: planned)"
        else:
            then = "installing everything pending now (rollup_updates: latest)"
        if moved_out:
            then += "; they need the host emptied and rebooted, not patched in place: its VMs"
            then += " move out and stay where they go"
        self.ctx.bus.emit(
            PlanDivergence(
                self.ctx.run_id,
                host=self.step.host,
                host_name=self.step.host_name,
                detail=f"{'; '.join(parts)}: {then}",
            )
        )

    @property
    def by_installer(self) -> bool:
        """A major upgrade by the network installer (not by the playbook)."""
        return self.step.upgrade and self.ctx.policy.installer_url is not None

    def _noted(self, key: str) -> bool:
        return self.ctx.journal.recall(self.ctx.run_id, self.step.host, key) is not None

    async def upgrade(self) -> str:
        """Patching of a major upgrade: set the host to boot the installer ("" once the
        host runs the new release: then its patches are what patching installs)."""
        if not self.by_installer or self._noted(UPGRADED):
            return ""
        url = self.ctx.policy.installer_url
        assert url is not None
        await self.ctx.call(self.ctx.driver.prepare_upgrade, self.step.host, url)
        return f"set to boot the installer of {self.ctx.policy.target_version}"

    async def after_upgrade(self) -> bool:
        """Verifying a major upgrade: whether the new release's updates are pending (then
        they are installed now, in the same evacuation) or already were."""
        if not self.by_installer:
            return False
        self.ctx.journal.note(self.ctx.run_id, self.step.host, UPGRADED, True)
        now, _ = await self.pending_now()
        if not now.updates:
            return False
        if self._noted(PATCHED_AFTER):
            left = ", ".join(update.label for update in now.updates)
            raise HostFailed(
                f"{self.step.host_name} still has updates pending after its upgrade and"
                f" patch: {left}; see the pool's logs, then resume",
                "UPDATES_LEFT",
            )
        self.ctx.journal.note(self.ctx.run_id, self.step.host, PATCHED_AFTER, True)
        # xapi enabled it as it started: out of service again for the patch's reboot.
        await self.ctx.call(self.ctx.driver.disable, self.step.host)
        return True

    async def install(self) -> tuple[str, ...]:
        """Install the hypervisor's way; its output lines."""
        packages: tuple[str, ...] | None = ()
        hash_ = self.ctx.updates_hash
        if self.step.upgrade:
            _, hash_ = await self.pending_now()  # the new release's, read now
        elif self.known:
            if self.ctx.policy.updates == "planned":
                packages = await self._planned_packages() if not self.ctx.updates_hash else ()
            else:
                _, hash_ = await self.pending_now()
        if packages is None:
            return ("nothing planned is pending any more: nothing installed",)
        follow = Follow(self.ctx.policy.install_timeout_seconds, self._say)
        try:
            output: tuple[str, ...] = await self.ctx.call(
                self.ctx.driver.install_updates, self.step.host, packages, hash_, follow
            )
        except DriverError as error:
            if error.code == "UPDATEINFO_HASH_MISMATCH":
                raise HostFailed(
                    f"{self.step.host_name}: updates were published since planning"
                    " (UPDATEINFO_HASH_MISMATCH) and rollup_updates is planned: nothing was"
                    " installed; plan again to install them, or set rollup_updates: latest",
                    error.code,
                    error.evidence,
                    untouched=True,
                ) from None
            raise
        return output

    async def _planned_packages(self) -> tuple[str, ...] | None:
        """What `planned` names to the installer: nothing (install all) while what is
        pending is exactly the plan, one install at a time otherwise. XCP-ng's updater
        takes a single package pattern per call (xcp-ng-xapi-plugins updater.py), so
        naming packages costs a yum run each: done only when something was published
        since planning, and said. None: nothing planned is pending any more (a resume
        after the install), so nothing is to be installed."""
        now, _ = await self.pending_now()
        labels = {update.label for update in now.updates}
        if labels <= set(self.planned):
            return ()  # everything pending was planned: one install of all is the plan
        # A planned build superseded since is still installed as planned; one whose
        # package is no longer pending at all was installed meanwhile.
        names = {update.name for update in now.updates}
        assert self.step.pending is not None
        chosen = tuple(u.label for u in self.step.pending.updates if u.name in names)
        if not chosen:
            return None
        self._say(
            f"installing the {count(len(chosen), 'planned update')} one at a time, leaving"
            f" {count(len(labels - set(chosen)), 'update')} published since planning"
            " (rollup_updates: planned)"
        )
        return chosen

    def _say(self, text: str) -> None:
        self.ctx.bus.emit(
            StepActivity(
                self.ctx.run_id,
                host=self.step.host,
                host_name=self.step.host_name,
                state="patching",
                text=text,
            )
        )

    async def patch(self) -> tuple[str, str]:
        """Install, then do what the host asks short of a reboot: the step's detail, and
        why it needs no reboot ("" when it does)."""
        await self.install()
        installed = (
            f"{count(len(self.planned), 'update')} installed"
            if self.known and self.ctx.policy.updates == "planned" and not self.step.upgrade
            else "updates installed"
        )
        then = await self.next_action()
        if then.action == "reboot" or self.ctx.policy.reboot == "always":
            why = ", ".join(then.why) or "always"
            if self.in_place:
                self._empty_after_all(why)
            return f"{installed}, reboot required ({why})", ""
        if then.action == "toolstack":
            timeout = self.ctx.policy.host_timeout_seconds
            await self.ctx.call(self.ctx.driver.restart_toolstack, self.step.host, timeout)
            return f"{installed}, toolstack restarted", "its updates need a toolstack restart only"
        return f"{installed}, no reboot needed", "its updates need no reboot"

    def _empty_after_all(self, why: str) -> None:
        """An in-place host whose install now asks for a reboot (a livepatch failed, and
        xapi recommends a reboot as XenCenter follows it): emptied, then rebooted. Noted,
        so a resume in patching empties it again rather than reboot it under its VMs."""
        self.in_place = False
        self.must_empty = True
        self.ctx.journal.note(self.ctx.run_id, self.step.host, MOVED_OUT, True)
        self.ctx.journal.note(self.ctx.run_id, self.step.host, EMPTY_AFTER_INSTALL, True)
        self.ctx.bus.emit(
            PlanDivergence(
                self.ctx.run_id,
                host=self.step.host,
                host_name=self.step.host_name,
                detail=f"its install asks for a reboot ({why}): it is emptied and rebooted,"
                " not patched in place; its VMs move out and stay where they go",
            )
        )

    async def next_action(self) -> Next:
        """What the host's pending guidances ask for now that it is installed."""
        pool = await self.ctx.snapshot(self.step.host)
        guidances = pool.host(self.step.host).pending_guidances
        reboots = tuple(g for g in guidances if g.startswith(REBOOT))
        if reboots:
            return Next("reboot", reboots)
        if TOOLSTACK in guidances:
            return Next("toolstack", (TOOLSTACK,))
        return Next("none")

    async def verify(self) -> str:
        """Nothing planned left (`latest`: nothing at all) and no mandatory guidance."""
        pool = await self.ctx.snapshot(self.step.host)
        left_guidance = pool.host(self.step.host).pending_guidances
        if left_guidance:
            raise HostFailed(
                f"{self.step.host_name} still has mandatory update guidance pending"
                f" ({', '.join(left_guidance)}): act on it, then resume",
                "GUIDANCE_PENDING",
            )
        if not self.known or self.step.upgrade:
            return ""
        now, _ = await self.pending_now()
        labels = [update.label for update in now.updates]
        if self.ctx.policy.updates == "latest":
            left = labels
        else:
            left = [label for label in labels if label in self.planned]
        if left:
            raise HostFailed(
                f"{self.step.host_name} still has {noun(len(left), 'update')} pending after"
                f" its patch: {', '.join(left)}; see the patch output, then resume",
                "UPDATES_LEFT",
            )
        newer = [label for label in labels if label not in left]
        if newer:
            self.ctx.bus.emit(
                Message(
                    self.ctx.run_id,
                    level="warning",
                    text=f"{self.step.host_name}: {noun(len(newer), 'update')} published since"
                    f" planning left for the next run: {', '.join(newer)}",
                    host=self.step.host,
                )
            )
        return "nothing pending"
