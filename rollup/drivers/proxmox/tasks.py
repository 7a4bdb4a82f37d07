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
# "migration active, transferred 351.9 MiB of 2.0 GiB VM-state, 112.4 MiB/s": the RAM's
# progress (disk mirroring logs "drive-scsi0: transferred ..." lines of its own).
_TRANSFERRED = re.compile(
    r"transferred (?P<done>[\d.]+) (?P<done_unit>[KMGT]?i?B) of"
    r" (?P<total>[\d.]+) (?P<total_unit>[KMGT]?i?B) VM-state"
)
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
# What a task log holds before its first line.
NO_CONTENT = "no content"
LOG_PAGE = 500  # lines per read: a migration logs a line a second or so


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
        for entry in link.get(what, f"{path}/log", start=len(lines), limit=LOG_PAGE) or ():
            text = str(entry.get("t", ""))
            if entry.get("n") == 1 and text == NO_CONTENT:
                continue
            lines.append(text)
            if progress is not None:
                fraction = _fraction(text)
                if fraction is not None:
                    progress(fraction)
        if status.get("status") == "stopped":
            exitstatus = str(status.get("exitstatus", ""))
            # "WARNINGS: 2" is how PVE ends a task that did its work with warnings.
            ok = exitstatus == "OK" or exitstatus.startswith("WARNINGS")
            return Outcome(ok, exitstatus, tuple(lines))
        if time.monotonic() > deadline:
            raise HostTimeout(
                f"could not {what}: task {upid} still runs after {timeout:.0f}s",
                "TASK_TIMEOUT",
                (upid,),
            )
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_MAX_SECONDS)


def _fraction(line: str) -> float | None:
    moved = _TRANSFERRED.search(line)
    if moved is None:
        return None
    done = float(moved["done"]) * _UNITS.get(moved["done_unit"], 1)
    total = float(moved["total"]) * _UNITS.get(moved["total_unit"], 1)
    return min(1.0, done / total) if total > 0 else None
