"""Typed events: what the rollout tells the world, and the bus that carries them.

The rollout emits events; sinks subscribe: the journal's (rollup/run/journal.py), JSON
lines and log lines (rollup/output/sinks.py), JUnit (rollup/output/junit.py) and the TUI.
No sink ever calls back into the rollout or a driver. Events hold pool data only — never
a credential — so every sink may write them anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rollup.text.quoting import one_line

log = logging.getLogger("rollup")

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
    # The inventory's name of the pool the run is on: the bus stamps it, so a fleet's
    # events (several pools in one stream) say whose they are.
    pool: str = field(default="", kw_only=True)


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
    """How one state's action ended for a host, with the evidence when it failed.

    On failure `error` says why in one line and `evidence` holds the last lines of output
    (the playbook's, the hypervisor's code and parameters) that show it.
    """

    kind: ClassVar[str] = "action"
    host: str
    host_name: str
    state: str
    ok: bool
    seconds: float
    detail: str = ""
    error: str = ""
    code: str = ""
    evidence: tuple[str, ...] = ()


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
class StepActivity(Event):
    """What a long step of a host is doing or waiting on now (an install, a busy service)."""

    kind: ClassVar[str] = "activity"
    host: str
    host_name: str
    state: str
    text: str


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
class GateChecked(Event):
    """A health gate around a host said no (the run waits on it), or yes after a wait."""

    kind: ClassVar[str] = "gate"
    host: str
    host_name: str
    phase: str  # before_host | after_host
    gate: str  # what was asked: "prometheus http://...", "http https://...", "command"
    ok: bool
    reason: str  # why it blocks ("" once it passes)
    waited: float  # seconds since the host started waiting on its gates


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


@dataclass(frozen=True)
class PoolFinished(Event):
    """A pool of a fleet (`rollup run --pools`) is over: how its run ended, or why none ran.

    `run_id` is empty for a pool that never started a run (refused, unreachable, bad
    input, or not started because the fleet was stopped)."""

    kind: ClassVar[str] = "pool-finished"
    exit_code: int
    summary: str


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStateChanged,
    HostStateChanged,
    ActionResult,
    GateChecked,
    MigrationProgress,
    StepActivity,
    AnsibleTask,
    CheckResult,
    PlanDivergence,
    Message,
    RunFinished,
    PoolFinished,
)


def to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON holds it: a tuple (evidence) becomes a list, as json would."""
    fields = dataclasses.asdict(event)
    return {
        "kind": event.kind,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
    }


def from_dict(data: dict[str, Any]) -> Event | None:
    """An event back from its JSON form (the journal's); None for an unknown kind."""
    for cls in EVENT_TYPES:
        if cls.kind == data.get("kind"):
            names = {f.name for f in dataclasses.fields(cls)}
            # JSON has no tuples: a list comes back as one, so an event read from the
            # journal equals the one emitted (and stays hashable, like every event).
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            try:
                return cls(**{k: v for k, v in fields.items() if k in names})
            except TypeError:
                return None
    return None


def to_json(event: Event) -> str:
    return json.dumps(to_dict(event), separators=(",", ":"), sort_keys=True)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber, in order, from whichever thread emits it.

    A subscriber that raises loses its subscription and is logged once (logger "rollup"):
    a broken sink (closed pipe, full disk) must not stop the upgrade of a pool half-way,
    and a Message event about it would go through the same bus. An essential subscriber
    (the journal's) is different: what it records is what `rollup resume` trusts, so its
    failure is kept in `failure`, which the rollout reads to stop at its next safe point.
    """

    def __init__(self, pool: str = "") -> None:
        self._subscribers: list[tuple[Subscriber, bool]] = []
        self._lock = threading.RLock()
        self.failure = ""  # the first essential subscriber's failure, in words
        self.pool = pool  # stamped on every event that does not say its pool

    def subscribe(self, subscriber: Subscriber, essential: bool = False) -> None:
        with self._lock:
            self._subscribers.append((subscriber, essential))

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s[0] != subscriber]

    def emit(self, event: Event) -> None:
        if self.pool and not event.pool:
            event = dataclasses.replace(event, pool=self.pool)
        with self._lock:
            for entry in tuple(self._subscribers):
                subscriber, essential = entry
                try:
                    subscriber(event)
                except Exception as error:
                    if entry in self._subscribers:  # it may have unsubscribed itself
                        self._subscribers.remove(entry)
                    self._dropped(subscriber, essential, error)

    def _dropped(self, subscriber: Subscriber, essential: bool, error: Exception) -> None:
        reason = one_line(str(error), 200)
        failed = f"event sink {sink_name(subscriber)} failed ({type(error).__name__}" + (
            f": {reason})" if reason else ")"
        )
        if essential:
            self.failure = self.failure or failed
            log.error("%s: it gets no more events; the run stops at its next safe point", failed)
        else:
            log.warning("%s: it gets no more events", failed)


def sink_name(subscriber: Subscriber) -> str:
    """What a log line calls a subscriber: its class for a sink object, else its name."""
    named = getattr(subscriber, "__qualname__", None)
    return named if isinstance(named, str) else type(subscriber).__name__
