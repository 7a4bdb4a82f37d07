"""Following a PVE task (its UPID) to its end, with its progress and its log.

A call that takes time answers a UPID at once; the task runs on its node. rollup asks
its status until it has stopped and reads its log as it grows: a migration's "transferred
X MiB of Y MiB" lines are its progress, and the last lines are the evidence when the
task ends with anything other than "OK".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from rollup.drivers import Progress
from rollup.drivers.proxmox.link import ApiLink
from rollup.errors import HostTimeout

POLL_SECONDS = 0.1
POLL_MAX_SECONDS = 1.0
EVIDENCE_LINES = 5
_TRANSFERRED = re.compile(r"transferred (?P<done>[\d.]+) \w+ of (?P<total>[\d.]+) \w+")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    exitstatus: str
    log: tuple[str, ...]

    @property
    def evidence(self) -> tuple[str, ...]:
        return self.log[-EVIDENCE_LINES:]


def node_of(upid: str) -> str:
    """ "UPID:h1:..." → "h1"."""
    parts = upid.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "UPID" else ""


def follow(
    link: ApiLink, upid: str, what: str, timeout: float, progress: Progress | None = None
) -> Outcome:
    """Wait for task `upid` to stop; its outcome and its log."""
    node = node_of(upid)
    path = f"nodes/{node}/tasks/{upid}"
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    wait = POLL_SECONDS
    while True:
        status = link.get(what, f"{path}/status")
        for entry in link.get(what, f"{path}/log", start=len(lines), limit=500) or ():
            text = str(entry.get("t", ""))
            lines.append(text)
            moved = _TRANSFERRED.search(text)
            if progress is not None and moved and float(moved["total"]) > 0:
                progress(min(1.0, float(moved["done"]) / float(moved["total"])))
        if status.get("status") == "stopped":
            exitstatus = str(status.get("exitstatus", ""))
            return Outcome(exitstatus == "OK", exitstatus, tuple(lines))
        if time.monotonic() > deadline:
            raise HostTimeout(
                f"could not {what}: task {upid} still runs after {timeout:.0f}s",
                "TASK_TIMEOUT",
                (upid,),
            )
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_MAX_SECONDS)
