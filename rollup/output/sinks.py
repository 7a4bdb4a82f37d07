"""Sinks that write a run's events for pipelines and people: JSON lines and log lines.

The journal's sink lives with the journal (rollup/run/journal.py), JUnit's with its
report (rollup/output/junit.py). Events hold pool data only, so these write them as
they are; a failure's evidence is output of the host's playbook or of the hypervisor,
never rollup's own secrets (they are not playbook variables).
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from rollup.run.events import (
    ActionResult,
    AnsibleTask,
    CheckResult,
    Event,
    GateChecked,
    HostStateChanged,
    Message,
    MigrationProgress,
    PlanDivergence,
    RunFinished,
    RunStateChanged,
    StepActivity,
    to_json,
)

# A fleet's pools write to the same stdout and stderr from their own threads: one line
# at a time, never two interleaved.
_WRITING = threading.Lock()

LOG_EVIDENCE_LINES = 10  # a CI log shows the end of the output; the journal keeps more
EVIDENCE_INDENT = " " * 9 + "| "  # under the host column, marked as quoted output


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
        with _WRITING:
            self._stream.write(to_json(event) + "\n")
            self._stream.flush()


class LogSink:
    """Readable log lines for people and CI logs: `HH:MM:SS host  message`; in a fleet
    run (`show_pool`) `HH:MM:SS [pool] host  message`."""

    def __init__(self, stream: TextIO, verbose: bool = False, show_pool: bool = False) -> None:
        self._stream = stream
        self._verbose = verbose
        self._show_pool = show_pool

    def __call__(self, event: Event) -> None:
        line = self.format(event)
        if line:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            if self._show_pool:
                stamp += f" [{event.pool}]"
            lines = [line, *(EVIDENCE_INDENT + quoted for quoted in self.evidence(event))]
            with _WRITING:
                self._stream.write("".join(f"{stamp} {text}\n" for text in lines))
                self._stream.flush()

    @staticmethod
    def evidence(event: Event) -> tuple[str, ...]:
        """The output lines shown under a failure's line (the TUI shows them elsewhere)."""
        if isinstance(event, ActionResult) and not event.ok:
            return event.evidence[-LOG_EVIDENCE_LINES:]
        return ()

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
            case StepActivity(host_name=name, state=state, text=text):
                return f"{name:<8} {state}: {text}"
            case AnsibleTask(status="failed" | "unreachable", host_name=name, task=task) as e:
                return f"{name:<8} task {task!r} {e.status}: {e.message}"
            case AnsibleTask(host_name=name, task=task, status=status) if self._verbose:
                return f"{name:<8} task {task!r} {status}"
            case CheckResult(status="fail" | "warn", name=name, reason=reason) as e:
                return f"check    {e.status.upper()} {name}: {reason}"
            case GateChecked(ok=False, host_name=name, gate=gate, reason=reason) as e:
                where = e.phase.replace("_", " ")
                return f"{name:<8} waits on health gate {gate} ({where}): {reason}"
            case GateChecked(host_name=name, gate=gate, waited=waited):
                return f"{name:<8} health gate {gate} passes after {waited:.0f}s"
            case PlanDivergence(host_name=name, detail=detail):
                return f"{name:<8} re-planned: {detail}"
            case Message(level=level, text=text):
                prefix = "" if level == "info" else f"{level.upper()}: "
                return f"{prefix}{text}"
            case RunFinished(outcome=outcome, message=message):
                return f"run      {outcome}: {message}"
        return None
