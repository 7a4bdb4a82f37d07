"""Typed events: what the rollout tells the world, and the bus that carries them.

The rollout emits events; sinks subscribe (journal, JSON lines, log lines, JUnit, TUI).
No sink ever calls back into the rollout or a driver. Events hold pool data only — never
a credential — so every sink may write them anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO

# The states a host passes through, in order (HostStateChanged.state), and its ends.
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


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    run_id: str
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStateChanged(Event):
    kind: ClassVar[str] = "run-state"
    state: str
    previous: str
    reason: str = ""


@dataclass(frozen=True)
class HostStateChanged(Event):
    kind: ClassVar[str] = "host-state"
    host: str  # host id
    host_name: str
    state: str
    previous: str
    reason: str = ""


@dataclass(frozen=True)
class ActionResult(Event):
    """How one state's action ended for a host; `error` carries the evidence on failure."""

    kind: ClassVar[str] = "action"
    host: str
    host_name: str
    state: str
    ok: bool
    seconds: float
    detail: str = ""
    error: str = ""
    code: str = ""


@dataclass(frozen=True)
class MigrationProgress(Event):
    kind: ClassVar[str] = "migration"
    host: str  # the host whose step this migration belongs to
    vm: str
    vm_name: str
    source: str
    dest: str
    dest_name: str
    progress: float  # 0.0 .. 1.0
    status: str  # "started" | "running" | "done" | "failed"
    error: str = ""


@dataclass(frozen=True)
class AnsibleTask(Event):
    kind: ClassVar[str] = "ansible-task"
    host: str
    host_name: str
    playbook: str
    task: str
    status: str  # ok | changed | failed | skipped | unreachable | started
    message: str = ""


@dataclass(frozen=True)
class CheckResult(Event):
    kind: ClassVar[str] = "check"
    name: str
    status: str  # pass | warn | fail
    reason: str
    host: str | None = None


@dataclass(frozen=True)
class PlanDivergence(Event):
    """Reality differs from the plan; the rollout re-planned this host."""

    kind: ClassVar[str] = "divergence"
    host: str
    host_name: str
    detail: str


@dataclass(frozen=True)
class Message(Event):
    kind: ClassVar[str] = "message"
    level: str  # info | warning | error
    text: str
    host: str | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run-finished"
    outcome: str  # completed | failed | aborted | paused
    exit_code: int
    message: str
    hosts_done: int
    hosts_failed: int
    hosts_skipped: int
    migrations: int
    seconds: float


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStateChanged,
    HostStateChanged,
    ActionResult,
    MigrationProgress,
    AnsibleTask,
    CheckResult,
    PlanDivergence,
    Message,
    RunFinished,
)


def to_dict(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, **dataclasses.asdict(event)}


def from_dict(data: dict[str, Any]) -> Event | None:
    """An event back from its JSON form (the journal's); None for an unknown kind."""
    for cls in EVENT_TYPES:
        if cls.kind == data.get("kind"):
            names = {f.name for f in dataclasses.fields(cls)}
            try:
                return cls(**{k: v for k, v in data.items() if k in names})
            except TypeError:
                return None
    return None


def to_json(event: Event) -> str:
    return json.dumps(to_dict(event), separators=(",", ":"), sort_keys=True)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber, in order, from whichever thread emits it.

    A subscriber that raises is reported once on stderr-free terms (a Message event is
    not possible without recursion), so it is dropped rather than taking the run down.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:
            subscribers = tuple(self._subscribers)
            for subscriber in subscribers:
                try:
                    subscriber(event)
                except Exception:
                    # A broken sink (closed pipe, full disk) must not stop the upgrade of
                    # a pool half-way: it loses its subscription, the run goes on.
                    self._subscribers.remove(subscriber)


class JsonLinesSink:
    """One JSON object per event, flushed at once so a pipeline sees it live."""

    def __init__(self, stream: TextIO, progress_step: float = 0.25) -> None:
        self._stream = stream
        self._progress_step = progress_step
        self._last_progress: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, MigrationProgress) and event.status == "started":
            self._last_progress.pop(event.vm, None)  # a VM's next move starts from zero
        if isinstance(event, MigrationProgress) and event.status == "running":
            # Progress arrives many times a second; a pipeline needs milestones.
            last = self._last_progress.get(event.vm, 0.0)
            if event.progress - last < self._progress_step:
                return
            self._last_progress[event.vm] = event.progress
        self._stream.write(to_json(event) + "\n")
        self._stream.flush()


class LogSink:
    """Readable log lines for people and CI logs: `HH:MM:SS host  message`."""

    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self._stream = stream
        self._verbose = verbose

    def __call__(self, event: Event) -> None:
        line = self.format(event)
        if line:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            self._stream.write(f"{stamp} {line}\n")
            self._stream.flush()

    def format(self, event: Event) -> str | None:
        match event:
            case RunStateChanged(state="completed" | "failed" | "aborted"):
                return None  # RunFinished says it, with the summary
            case RunStateChanged(state="paused", previous="running") as e if e.reason.startswith(
                ("paused by", "detached")
            ):
                return f"run      paused: {e.reason}"
            case RunStateChanged(state="paused"):
                return "run      paused"  # RunFinished says why, once
            case RunStateChanged(state=state, reason=reason):
                return f"run      {state}" + (f": {reason}" if reason else "")
            case HostStateChanged(host_name=name, state="failed"):
                return f"{name:<8} failed"  # the action's FAILED line holds the evidence
            case HostStateChanged(host_name=name, state=state, reason=reason):
                return f"{name:<8} {state}" + (f" ({reason})" if reason else "")
            case ActionResult(ok=False, host_name=name, state=state, error=error):
                return f"{name:<8} {state} FAILED: {error}"
            case ActionResult(host_name=name, state=state, seconds=seconds, detail=detail):
                if not self._verbose and not detail:
                    return None
                return f"{name:<8} {state} done in {seconds:.1f}s" + (
                    f": {detail}" if detail else ""
                )
            case MigrationProgress(status="failed", vm_name=vm, dest_name=dest, error=error):
                return f"         migration of {vm} to {dest} FAILED: {error}"
            case MigrationProgress(status="done", vm_name=vm, dest_name=dest) if self._verbose:
                return f"         {vm} -> {dest}"
            case AnsibleTask(status="failed" | "unreachable", host_name=name, task=task) as e:
                return f"{name:<8} task {task!r} {e.status}: {e.message}"
            case AnsibleTask(host_name=name, task=task, status=status) if self._verbose:
                return f"{name:<8} task {task!r} {status}"
            case CheckResult(status="fail" | "warn", name=name, reason=reason) as e:
                return f"check    {e.status.upper()} {name}: {reason}"
            case PlanDivergence(host_name=name, detail=detail):
                return f"{name:<8} re-planned: {detail}"
            case Message(level=level, text=text):
                prefix = "" if level == "info" else f"{level.upper()}: "
                return f"{prefix}{text}"
            case RunFinished(outcome=outcome, message=message):
                return f"run      {outcome}: {message}"
        return None
