"""A deterministic pool, its plan, and scripted runs of it for the TUI tests and bench.

Events carry fixed times from T0 so snapshots do not move; `Script` emits them in the
order the real engine does (state, then the action's result, then the next state).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/strategies.py

from strategies import make_pool

from rollup.model import Pending, Plan, Policy, Update
from rollup.plan import planner
from rollup.run.events import (
    SEQUENCE,
    ActionResult,
    AnsibleTask,
    Event,
    HostStateChanged,
    Message,
    MigrationProgress,
    RunFinished,
    RunStateChanged,
)
from rollup.text.plurals import count

T0 = 1_700_000_000.0
RUN_ID = "20231114-221320-ab12"
PLAYBOOK = "playbooks/xcp-ng-update.yml"
TASKS = ("Gathering Facts", "yum clean all", "yum update", "check reboot required")
# The end of a failed yum update's output: what the failure's evidence shows.
YUM_FAILURE = (
    "Transaction check error:",
    "  installing package kernel-4.19.19-8.3.0 needs 212MB on the /boot filesystem",
    "Error Summary",
    "Disk Requirements: At least 212MB more space needed on the /boot filesystem.",
    "PLAY RECAP *********************************************************************",
    "h2 : ok=1    changed=0    unreachable=0    failed=1    skipped=0",
)


def small_plan(feasible: bool = True) -> Plan:
    """Six hosts (h1 the master), three to four VMs each, two hosts at a time."""
    layout = {
        "h1": [8, 4, 2],
        "h2": [16, 4, 4, 2],
        "h3": [8, 8, 2],
        "h4": [4, 4, 4],
        "h5": [2, 2, 2, 2],
        "h6": [16, 8],
    }
    pinned = {} if feasible else {"h4-vm0": "local-sr"}
    pool = make_pool(layout, capacity=64, versions="8.2.1", pinned=pinned)
    policy = Policy(target_version="8.3.0", max_parallel_hosts=2, canary=1)
    return planner.plan(pool, policy, now=T0)


def patch_plan() -> Plan:
    """A patch of what each host reports pending: the master's kernel (a reboot), two
    livepatch hosts patched in place, one host with nothing pending."""
    pool = make_pool(
        {"h1": [8, 4], "h2": [8, 4], "h3": [4, 4], "h4": [4, 2]}, capacity=64, versions="8.4.0"
    )
    kernel = Update("kernel", "4.19.19", "8.0.38.xs8", "dom0 kernel: security fixes", "High")
    curl = Update("curl", "8.4.0", "3.xs8", "curl: security fixes")
    live = Update("XSU-84-0004", summary="kernel livepatch", severity="High", livepatch=True)
    pending = {
        "h1": Pending(updates=(kernel, curl), guidance=("reboot_host",)),
        "h2": Pending(updates=(live,), recommended=("reboot_host_on_livepatch_failure",)),
        "h3": Pending(updates=(live,), recommended=("reboot_host_on_livepatch_failure",)),
        "h4": Pending(),
    }
    hosts = tuple(dataclasses.replace(h, pending=pending[h.name]) for h in pool.hosts)
    pool = dataclasses.replace(pool, hosts=hosts, flavor="xenserver", updates_hash="c891dd78")
    return planner.plan(pool, Policy(update="xapi", reboot="if-required"), now=T0)


def large_plan(hosts: int = 64, vms_per_host: int = 48) -> Plan:
    """A big pool for the benchmark: 64 hosts of 48 VMs, about 3000 VMs."""
    layout = {f"h{i + 1:02d}": [1.0] * vms_per_host for i in range(hosts)}
    pool = make_pool(layout, capacity=256, versions="8.2.1")
    return planner.plan(pool, Policy(target_version="8.3.0", max_parallel_hosts=4), now=T0)


class Script:
    """Builds the events of a run with a clock that only moves when told to."""

    def __init__(self, plan: Plan, run_id: str = RUN_ID) -> None:
        self.plan = plan
        self.run_id = run_id
        self.now = T0
        self.events: list[Event] = []
        self.states = {step.host: "pending" for step in plan.steps}
        self.run_state = "planned"

    def wait(self, seconds: float) -> Script:
        self.now += seconds
        return self

    def run(self, state: str, reason: str = "") -> Script:
        self.events.append(RunStateChanged(self.run_id, state, self.run_state, reason, at=self.now))
        self.run_state = state
        return self

    def _step(self, host_name: str):
        return next(s for s in self.plan.steps if s.host_name == host_name)

    def host(self, name: str, state: str, reason: str = "") -> Script:
        step = self._step(name)
        self.events.append(
            HostStateChanged(
                self.run_id, step.host, name, state, self.states[step.host], reason, at=self.now
            )
        )
        self.states[step.host] = state
        return self

    def result(
        self,
        name: str,
        ok: bool = True,
        detail: str = "",
        error: str = "",
        evidence: tuple[str, ...] = (),
    ) -> Script:
        step = self._step(name)
        state = self.states[step.host]
        code = "" if ok else "PLAYBOOK_FAILED"
        self.events.append(
            ActionResult(
                self.run_id, step.host, name, state, ok, 5.0, detail, error, code, evidence,
                at=self.now,
            )
        )  # fmt: skip
        return self

    def migrate(self, name: str, progress: dict[int, float], back: bool = False) -> Script:
        """Progress of the host's planned moves by index: 1.0 is done."""
        step = self._step(name)
        moves = step.restore if back else step.evacuate
        names = {h.id: h.name for h in self.plan.pool.hosts}
        for index, value in progress.items():
            move = moves[index]
            status = "done" if value >= 1.0 else "running" if value > 0 else "started"
            for stage in ("started", status) if status != "started" else ("started",):
                self.events.append(
                    MigrationProgress(
                        self.run_id,
                        step.host,
                        move.vm,
                        move.vm_name,
                        move.source,
                        move.dest,
                        names[move.dest],
                        value if stage != "started" else 0.0,
                        stage,
                        at=self.now,
                    )
                )
        return self

    def task(self, name: str, task: str, status: str = "ok", message: str = "") -> Script:
        step = self._step(name)
        self.events.append(
            AnsibleTask(self.run_id, step.host, name, PLAYBOOK, task, status, message, at=self.now)
        )
        return self

    def say(self, text: str, level: str = "info") -> Script:
        self.events.append(Message(self.run_id, level, text, at=self.now))
        return self

    def upgrade(self, name: str) -> Script:
        """A whole host's turn, done."""
        step = self._step(name)
        details = {
            "checking": f"{count(len(step.evacuate), 'VM')} to move, target 8.3.0",
            "evacuating": f"{count(len(step.evacuate), 'VM')} moved",
            "patching": "reboot required",
            "rebooting": "back at 8.3.0",
            "verifying": "running 8.3.0, nothing pending",  # as host_upgrade.py says it
            "restoring": f"{count(len(step.restore), 'VM')} back, 0 restarted",
        }
        for state in SEQUENCE[1:-1]:
            self.host(name, state).wait(2)
            if state == "evacuating":
                self.migrate(name, dict.fromkeys(range(len(step.evacuate)), 1.0)).wait(20)
            if state == "patching":
                for task in TASKS:
                    self.task(name, task, "changed" if task == "yum update" else "ok").wait(15)
            if state == "rebooting":
                self.wait(180)
            if state == "restoring":
                self.migrate(name, dict.fromkeys(range(len(step.restore)), 1.0), back=True)
                self.wait(20)
            self.result(name, detail=details.get(state, ""))
        return self.host(name, "done")

    def until(self, name: str, last: str) -> Script:
        """Walk a host through its states up to and including `last`, which stays open."""
        for state in SEQUENCE[1 : SEQUENCE.index(last) + 1]:
            self.host(name, state).wait(2)
            if state != last:
                self.result(name).wait(1)
        return self

    def finish(self, outcome: str, message: str, exit_code: int = 0) -> Script:
        done = sum(1 for s in self.states.values() if s == "done")
        failed = sum(1 for s in self.states.values() if s == "failed")
        self.events.append(
            RunFinished(
                self.run_id, outcome, exit_code, message, done, failed, 0, 0,
                self.now - T0, at=self.now,
            )
        )  # fmt: skip
        return self


def midway(plan: Plan) -> Script:
    """h1 and h2 done past the canary gate; h3 patching; h4 evacuating, VMs half moved."""
    script = Script(plan).run("running")
    script.upgrade("h1").wait(3)
    script.run("awaiting_approval", "1 canary host done: approve to go on").wait(30)
    script.run("running", "approved")
    script.upgrade("h2").wait(3)
    script.until("h3", "evacuating").migrate("h3", {0: 1.0, 1: 1.0, 2: 1.0})
    script.wait(20).result("h3", detail="3 VMs moved").host("h3", "patching")
    script.task("h3", "Gathering Facts").wait(10).task("h3", "yum clean all").wait(5)
    script.task("h3", "yum update", "started")
    script.until("h4", "evacuating").migrate("h4", {0: 1.0, 1: 0.62, 2: 0.1})
    return script.wait(12)


def failed(plan: Plan) -> Script:
    """h2's patch failed; the run paused for the operator."""
    script = Script(plan).run("running")
    script.upgrade("h1").wait(3)
    script.run("awaiting_approval", "1 canary host done: approve to go on").wait(30)
    script.run("running", "approved")
    script.until("h2", "evacuating").migrate("h2", {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    script.wait(20).result("h2", detail="4 VMs moved").host("h2", "patching")
    script.task("h2", "Gathering Facts").wait(10)
    script.task("h2", "yum update", "failed", "No space left on device").wait(1)
    error = "patch playbook failed at task 'yum update': No space left on device"
    script.result("h2", ok=False, error=error, evidence=YUM_FAILURE)
    script.host("h2", "failed", f"patching: {error}")
    script.say(
        "h2 failed while patching: " + error + ". It stays disabled and out of service;"
        " every other host is enabled and every VM runs.",
        "error",
    )
    script.run("paused", f"h2 failed while patching: {error}. Fix the cause, then resume")
    return script.wait(5)


def gate(plan: Plan) -> Script:
    """h1 done; the canary gate waits for approval."""
    script = Script(plan).run("running")
    script.upgrade("h1").wait(3)
    script.run("awaiting_approval", "1 canary host done: approve to go on")
    return script.wait(8)
