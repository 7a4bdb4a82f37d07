"""The dashboard's view model: what the run looks like, folded from its events.

`RunView.apply(event)` is the only way the view changes; it does no I/O, reads no clock and
knows nothing of Textual, so it is tested with plain events and serves any renderer. It
returns which hosts changed, so the screen redraws those rows and nothing else — that is
what keeps a 64-host pool with thousands of migrations cheap to follow.
"""

from __future__ import annotations

import io
import re
from collections import deque
from dataclasses import dataclass, field

from rollup.model import Plan
from rollup.output.sinks import LogSink
from rollup.run.events import (
    SEQUENCE,
    ActionResult,
    AnsibleTask,
    CheckResult,
    Event,
    HostStateChanged,
    Message,
    MigrationProgress,
    PlanDivergence,
    RunFinished,
    RunStateChanged,
    StepActivity,
)

FINAL = ("done", "failed", "skipped")
# How far along a host is when it enters each state (pending 0 … done 1).
_WEIGHT = {state: i / (len(SEQUENCE) - 1) for i, state in enumerate(SEQUENCE)}
_VERSION = re.compile(r"(?:running|back at) ([^\s,;]+)")  # "running 8.3.0, nothing pending"
LOG_LINES = 2000
TASK_LINES = 200
RUN_CHANGED = "*run*"  # pseudo host id in `apply`'s result: the header or log changed


@dataclass
class StepTime:
    """One state a host went through, with when it started and how it ended."""

    state: str
    started: float
    ended: float | None = None
    ok: bool | None = None
    detail: str = ""
    evidence: tuple[str, ...] = ()  # a failed step's last lines of output


@dataclass
class MigrationView:
    vm: str
    vm_name: str
    dest_name: str
    direction: str  # "out" (evacuating) or "back" (restoring)
    progress: float = 0.0
    status: str = "started"
    error: str = ""


@dataclass
class TaskLine:
    at: float
    playbook: str
    task: str
    status: str
    message: str = ""


@dataclass
class HostView:
    id: str
    name: str
    batch: int  # 0-based; -1 for hosts the plan skips
    version_before: str
    version_after: str  # the target until the host reports what it came back at
    planned_out: int
    planned_back: int
    estimate_seconds: float = 0.0
    state: str = "pending"
    reason: str = ""
    failed_in: str = ""
    error: str = ""
    started: float | None = None
    finished: float | None = None
    out_done: int = 0
    back_done: int = 0
    timeline: list[StepTime] = field(default_factory=list)
    migrations: dict[str, MigrationView] = field(default_factory=dict)
    tasks: deque[TaskLine] = field(default_factory=lambda: deque(maxlen=TASK_LINES))
    divergence: str = ""
    activity: str = ""  # what its current step is doing or waiting on, when it says

    @property
    def active(self) -> bool:
        return self.state not in ("pending", *FINAL)

    def step_progress(self) -> float | None:
        """How far the current step is, when it can be known (migrations); else None."""
        if self.state in ("evacuating", "restoring"):
            direction = "out" if self.state == "evacuating" else "back"
            planned = self.planned_out if direction == "out" else self.planned_back
            moving = [m for m in self.migrations.values() if m.direction == direction]
            total = max(planned, len(moving))
            if total == 0:
                return 1.0
            return min(1.0, sum(m.progress for m in moving) / total)
        if self.state == "done":
            return 1.0
        return None

    def progress(self) -> float:
        """The host's share of its whole turn that is behind it, 0..1."""
        if self.state in ("done", "skipped"):
            return 1.0
        if self.state == "failed":
            return _WEIGHT.get(self.failed_in, 0.0)
        base = _WEIGHT.get(self.state, 0.0)
        step = self.step_progress() or 0.0
        return base + step / (len(SEQUENCE) - 1)

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished or now) - self.started


@dataclass
class LogLine:
    at: float
    level: str  # info | warning | error
    text: str
    host: str | None = None


class RunView:
    """Everything the dashboard shows, built from the plan and then only from events."""

    def __init__(self, plan: Plan, run_id: str = "") -> None:
        self.plan = plan
        self.run_id = run_id
        self.pool_name = plan.inventory_name or plan.pool.name
        self.state = "planned"
        self.reason = ""
        self.started_at: float | None = None
        self.finished: RunFinished | None = None
        self.migrations_done = 0
        self.events_applied = 0
        self.log_total = 0  # lines ever logged; the log widget appends what is new
        self.log: deque[LogLine] = deque(maxlen=LOG_LINES)
        self.hosts: dict[str, HostView] = {}
        after = plan.policy.target_version or "patched"
        for batch in plan.batches:
            for step in batch.steps:
                self.hosts[step.host] = HostView(
                    id=step.host,
                    name=step.host_name,
                    batch=batch.index,
                    version_before=step.version_before,
                    version_after=after,
                    planned_out=len(step.evacuate),
                    planned_back=len(step.restore),
                    estimate_seconds=step.estimate_seconds,
                )
        for skipped in plan.skipped:
            version = _version_of(plan, skipped.host)
            self.hosts[skipped.host] = HostView(
                id=skipped.host,
                name=skipped.host_name,
                batch=-1,
                version_before=version,
                version_after=version,
                planned_out=0,
                planned_back=0,
                state="skipped",
                reason=f"not in the plan: {skipped.reason}",
            )
        self._lines = LogSink(io.StringIO())

    # -- folding events -------------------------------------------------------------------

    def apply(self, event: Event) -> set[str]:
        """Fold one event in; return the ids of hosts whose row changed (and RUN_CHANGED)."""
        self.events_applied += 1
        if not self.run_id:
            self.run_id = event.run_id
        changed: set[str] = set()
        match event:
            case RunStateChanged():
                self.state = event.state
                self.reason = event.reason
                if event.state == "running" and self.started_at is None:
                    self.started_at = event.at
                changed.add(RUN_CHANGED)
            case HostStateChanged():
                changed |= self._host_state(event)
            case ActionResult():
                changed |= self._action(event)
            case MigrationProgress():
                changed |= self._migration(event)
            case AnsibleTask():
                host = self.hosts.get(event.host)
                if host is not None:
                    host.tasks.append(
                        TaskLine(event.at, event.playbook, event.task, event.status, event.message)
                    )
                    changed.add(host.id)
            case StepActivity():
                host = self.hosts.get(event.host)
                if host is not None and host.state == event.state:
                    host.activity = event.text
                    changed.add(host.id)
            case PlanDivergence():
                host = self.hosts.get(event.host)
                if host is not None:
                    host.divergence = event.detail
                    changed.add(host.id)
            case RunFinished():
                self.finished = event
                self.state = event.outcome if event.outcome != "paused" else "paused"
                self.reason = event.message
                changed.add(RUN_CHANGED)
        if self._log(event):
            changed.add(RUN_CHANGED)
        return changed

    def _host_state(self, event: HostStateChanged) -> set[str]:
        host = self.hosts.get(event.host)
        if host is None:
            return set()
        if host.timeline and host.timeline[-1].ended is None:
            host.timeline[-1].ended = event.at
        host.state = event.state
        host.reason = event.reason
        host.activity = ""
        if event.state == "failed":
            host.failed_in = event.previous
            host.finished = event.at
        elif event.state in ("done", "skipped"):
            host.finished = event.at
        else:
            if host.started is None:
                host.started = event.at
            if event.previous == "failed":  # retried: the failure is history now
                host.finished = None
                host.error = ""
            host.timeline.append(StepTime(event.state, event.at))
            if event.state in ("evacuating", "restoring"):
                # A new round of migrations: the panel shows this step's VMs only.
                host.migrations.clear()
        return {host.id}

    def _action(self, event: ActionResult) -> set[str]:
        host = self.hosts.get(event.host)
        if host is None:
            return set()
        for step in reversed(host.timeline):
            if step.state == event.state:
                step.ok = event.ok
                step.detail = event.detail if event.ok else event.error
                step.evidence = event.evidence
                step.ended = step.ended or event.at
                break
        if not event.ok:
            host.error = event.error + (f" [{event.code}]" if event.code else "")
        found = _VERSION.search(event.detail) if event.ok else None
        if found:
            host.version_after = found.group(1)
        return {host.id}

    def _migration(self, event: MigrationProgress) -> set[str]:
        host = self.hosts.get(event.host)
        if host is None:
            return set()
        direction = "back" if host.state == "restoring" else "out"
        view = host.migrations.get(event.vm)
        if view is None:
            view = MigrationView(event.vm, event.vm_name, event.dest_name, direction)
            host.migrations[event.vm] = view
        view.progress = event.progress
        view.status = event.status
        view.dest_name = event.dest_name
        view.error = event.error
        if event.status == "done":
            self.migrations_done += 1
            if view.direction == "out":
                host.out_done += 1
            else:
                host.back_done += 1
        return {host.id}

    def _log(self, event: Event) -> bool:
        if isinstance(event, CheckResult) and event.status == "pass":
            return False
        text = self._lines.format(event)
        if not text:
            return False
        host = getattr(event, "host", None)
        self.log.append(LogLine(event.at, _level(event), text.strip(), host))
        self.log_total += 1
        return True

    # -- what the header shows ------------------------------------------------------------

    def progress(self) -> float:
        planned = [h for h in self.hosts.values() if h.batch >= 0]
        if not planned:
            return 1.0
        return sum(h.progress() for h in planned) / len(planned)

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "failed": 0, "skipped": 0, "active": 0, "pending": 0}
        for host in self.hosts.values():
            if host.state in counts:
                counts[host.state] += 1
            elif host.active:
                counts["active"] += 1
        return counts

    def elapsed(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        if self.finished is not None:
            return self.finished.seconds
        return max(0.0, now - self.started_at)

    def eta(self, now: float) -> float | None:
        """Seconds left: the plan's estimate at first, the observed pace once there is one."""
        if self.finished is not None or self.state in ("completed", "failed", "aborted"):
            return None
        done = self.progress()
        if done >= 1.0:
            return 0.0
        elapsed = self.elapsed(now)
        if done >= 0.1 and elapsed > 0:
            return elapsed * (1 - done) / done
        return self.plan.estimate_seconds * (1 - done)


def _version_of(plan: Plan, host_id: str) -> str:
    for host in plan.pool.hosts:
        if host.id == host_id:
            return host.version
    return "?"


def _level(event: Event) -> str:
    match event:
        case Message(level=level):
            return level
        case ActionResult(ok=False) | MigrationProgress(status="failed"):
            return "error"
        case AnsibleTask(status="failed" | "unreachable"):
            return "error"
        case CheckResult(status="fail"):
            return "error"
        case CheckResult(status="warn") | PlanDivergence():
            return "warning"
        case HostStateChanged(state="failed"):
            return "error"
        case RunFinished(outcome=outcome):
            return "info" if outcome == "completed" else "warning"
    return "info"
