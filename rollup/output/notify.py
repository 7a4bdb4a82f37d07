"""Notifications through Apprise (Slack, Teams, e-mail, ntfy, webhooks...): what an
unattended run tells the people who did not watch it.

A run started; a run waiting for approval (its start or canary gate); a host waiting on
a health gate; a host failed (with the last lines of its evidence); the run paused; the
run finished. Each goes to
every URL of `rollup_notify`, from a thread of its own: a slow or unreachable target
never holds the run up, and a failed notification is said (a warning event) with the
target named by its scheme and host only. The URLs hold secrets (tokens, passwords):
they are never logged, journaled or put in an event, and Apprise's own log is kept quiet
for the same reason.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rollup.errors import BadInput
from rollup.run.events import (
    ActionResult,
    Event,
    EventBus,
    GateChecked,
    HostStateChanged,
    Message,
    RunFinished,
    RunStateChanged,
)
from rollup.text.quoting import one_line

log = logging.getLogger("rollup")

EVIDENCE_LINES = 8  # of a failed host's output in its notification
FLUSH_SECONDS = 30.0  # how long the end of a run waits for the last notifications


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    kind: str  # apprise's notify type: info, success, warning, failure


def target_name(url: str) -> str:
    """A notification target as it may be shown: its scheme and host, nothing else."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '...'}"


def open_targets(urls: Sequence[str]) -> list[tuple[str, Any]]:
    """(shown name, Apprise object) per URL; BadInput naming the one Apprise cannot use."""
    import apprise  # only when a run notifies: it takes most of a second to import

    quiet = logging.getLogger("apprise")
    quiet.setLevel(logging.CRITICAL)  # it logs URLs, tokens included
    quiet.propagate = False
    targets = []
    for index, url in enumerate(urls, start=1):
        sender = apprise.Apprise()
        if not sender.add(url):
            raise BadInput(
                f"rollup_notify: URL {index} ({urlsplit(url).scheme or 'no scheme'}://...) is not"
                " one Apprise can send to: check its scheme and fields in Apprise's list"
            )
        targets.append((target_name(url), sender))
    return targets


class NotifySink:
    """An event sink: turns the events people want to hear of into notifications."""

    def __init__(self, urls: Sequence[str], bus: EventBus, pool: str) -> None:
        self.bus = bus
        self.pool = pool
        self.targets = open_targets(urls)
        self._evidence: dict[str, tuple[str, ...]] = {}  # host → last failure's evidence
        self.run_id = ""
        self._waiting: set[tuple[str, str, str]] = set()
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._thread = threading.Thread(target=self._send_all, name="notify", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        self.run_id = event.run_id or self.run_id
        notice = self._notice(event)
        if notice is not None:
            self._queue.put(notice)

    def _notice(self, event: Event) -> Notice | None:
        pool = self.pool
        if isinstance(event, ActionResult) and not event.ok:
            self._evidence[event.host_name] = (event.error, *event.evidence[-EVIDENCE_LINES:])
        elif isinstance(event, RunStateChanged):
            if event.state == "running" and event.previous == "planned":
                return Notice(f"rollup: {pool} started", f"Run {event.run_id} started.", "info")
            if event.state == "awaiting_approval":
                return Notice(
                    f"rollup: {pool} waits for approval",
                    f"{event.reason or 'The run waits'}: rollup approve {event.run_id}",
                    "warning",
                )
            if event.state == "paused":
                return Notice(f"rollup: {pool} paused", event.reason or "paused", "warning")
        elif isinstance(event, GateChecked) and not event.ok:
            waiting = (event.host_name, event.phase, event.gate)
            if waiting in self._waiting:
                return None  # told once per wait, not each time its reason changes
            self._waiting.add(waiting)
            where = event.phase.replace("_", " ")
            return Notice(
                f"rollup: {pool}: {event.host_name} waits on a health gate",
                f"{event.host_name} waits on {event.gate} ({where}): {event.reason}",
                "warning",
            )
        elif isinstance(event, HostStateChanged) and event.state == "failed":
            lines = self._evidence.get(event.host_name, (event.reason,))
            body = "\n".join([f"{event.host_name} failed: {lines[0]}", *lines[1:]])
            return Notice(f"rollup: {pool}: {event.host_name} failed", body, "failure")
        elif isinstance(event, RunFinished):
            kind = "success" if event.outcome == "completed" else "failure"
            if event.outcome == "paused":
                kind = "warning"
            return Notice(f"rollup: {pool} {event.outcome}", event.message, kind)
        return None

    def _send_all(self) -> None:
        while (notice := self._queue.get()) is not None:
            for name, sender in self.targets:
                try:
                    sent = sender.notify(title=notice.title, body=notice.body,
                                         notify_type=notice.kind)  # fmt: skip
                except Exception as error:  # a notifier's bug must not end the others
                    sent, reason = False, one_line(str(error), 120)
                else:
                    reason = "the target refused it or did not answer"
                if not sent:
                    self._failed(name, notice, reason)
            self._queue.task_done()

    def _failed(self, name: str, notice: Notice, reason: str) -> None:
        text = f"notification {notice.title!r} to {name} failed ({reason}); the run goes on"
        log.debug(text)
        self.bus.emit(Message(self.run_id, level="warning", text=text))

    def close(self) -> None:
        """Send what is queued (for at most FLUSH_SECONDS), then stop."""
        self._queue.put(None)
        self._thread.join(FLUSH_SECONDS)
