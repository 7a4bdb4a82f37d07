"""What happened in a run, host by host, read back from its journal: what the report says.

The journal keeps the plan the run executed and every event it emitted (migrations at
their start and end). From them: each host's states with their times, its migrations,
its waits on health gates, its failures with their evidence, and the plan it was given
(batch, moves, estimate, updates), so the report can put plan and actual side by side.
Pure once the journal is read: no pool, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollup.codec import from_data
from rollup.model import Plan
from rollup.run.journal import Journal, RunRecord

FINAL = ("done", "failed", "skipped")


@dataclass
class Failure:
    state: str
    error: str
    code: str
    evidence: tuple[str, ...]
    at: float


@dataclass
class HostStory:
    host: str  # id
    name: str
    batch: int | None = None  # planned batch (1-based); None: not in the plan's batches
    planned_out: int = 0  # planned migrations off it
    planned_seconds: float = 0.0
    planned_updates: tuple[str, ...] = ()
    skipped_because: str = ""  # the plan left it out
    upgrade: str = ""  # the release a major upgrade takes it to
    states: list[tuple[str, float, float]] = field(default_factory=list)  # state, from, to
    final: str = "pending"
    moves_out: int = 0
    moves_in: int = 0
    failures: list[Failure] = field(default_factory=list)
    waits: list[tuple[float, float, str, str]] = field(default_factory=list)  # from, to, gate, why

    @property
    def seconds(self) -> float:
        return self.states[-1][2] - self.states[0][1] if self.states else 0.0


@dataclass
class Migration:
    vm: str
    source: str  # host names
    dest: str
    start: float
    end: float
    ok: bool


@dataclass
class RunStory:
    record: RunRecord
    plan: Plan
    hosts: list[HostStory]
    migrations: list[Migration]
    divergences: list[tuple[str, str]]  # host name, what differed
    warnings: list[str]
    start: float
    end: float


def read(journal: Journal, run_id: str) -> RunStory:
    record = journal.run(run_id)
    if record is None:
        raise KeyError(run_id)
    events = [event for _, event in journal.events(record.id)]
    return build(record, events)


def build(record: RunRecord, events: list[dict[str, Any]]) -> RunStory:
    plan = from_data(Plan, record.plan)
    names = {h.id: h.name for h in plan.pool.hosts}
    hosts = {h.id: HostStory(h.id, h.name) for h in plan.pool.hosts}
    for batch in plan.batches:
        for step in batch.steps:
            story = hosts[step.host]
            story.batch = batch.index + 1
            story.planned_out = len(step.evacuate)
            story.planned_seconds = step.estimate_seconds
            story.planned_updates = tuple(
                u.label for u in (step.pending.updates if step.pending else ())
            )
    for skipped in plan.skipped:
        hosts[skipped.host].skipped_because = skipped.reason
        hosts[skipped.host].final = "skipped"
    start = record.started
    end = record.finished or max((e["at"] for e in events), default=start)
    migrations: list[Migration] = []
    started: dict[str, float] = {}
    waiting: dict[tuple[str, str], tuple[float, str, str]] = {}
    divergences, warnings = [], []
    for event in events:
        kind, at = event["kind"], float(event["at"])
        if kind == "host-state":
            story = hosts[event["host"]]
            if story.states:
                state, since, _ = story.states[-1]
                story.states[-1] = (state, since, at)
            story.states.append((event["state"], at, at))
            story.final = event["state"]
        elif kind == "action" and not event["ok"]:
            failure = Failure(
                event["state"], event["error"], event["code"], tuple(event["evidence"]), at
            )
            hosts[event["host"]].failures.append(failure)
        elif kind == "migration" and event["status"] == "started":
            started[event["vm"]] = at
        elif kind == "migration" and event["status"] in ("done", "failed"):
            source = names.get(event["source"], event["source"])
            since = started.pop(event["vm"], at)
            ok = event["status"] == "done"
            migrations.append(
                Migration(event["vm_name"], source, event["dest_name"], since, at, ok)
            )
            if event["status"] == "done":
                if event["source"] in hosts:
                    hosts[event["source"]].moves_out += 1
                for story in hosts.values():
                    if story.name == event["dest_name"]:
                        story.moves_in += 1
        elif kind == "gate":
            key = (event["host"], event["gate"])
            if not event["ok"] and key not in waiting:
                waiting[key] = (at, event["gate"], event["reason"])
            elif event["ok"] and key in waiting:
                since, gate, reason = waiting.pop(key)
                hosts[event["host"]].waits.append((since, at, gate, reason))
        elif kind == "divergence":
            divergences.append((event["host_name"], event["detail"]))
        elif kind == "message" and event["level"] in ("warning", "error"):
            warnings.append(event["text"])
    for (host, _), (since, gate, reason) in waiting.items():
        hosts[host].waits.append((since, end, gate, reason))  # still waiting at the end
    for story in hosts.values():  # a host still in a state when the run ended
        if story.states and story.final not in FINAL:
            state, since, _ = story.states[-1]
            story.states[-1] = (state, since, end)
    order = {h.id: i for i, h in enumerate(plan.pool.hosts)}
    ranked = sorted(hosts.values(), key=lambda s: (s.batch is None, s.batch or 0, order[s.host]))
    return RunStory(record, plan, ranked, migrations, divergences, warnings, start, end)
