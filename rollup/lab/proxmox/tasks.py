"""Tasks as a PVE node keeps them: a UPID each, a log, a status once it ends.

A call that takes time (a migration, starting a VM) answers at once with the task's
UPID; the work runs in its own thread. A client follows it through
`/nodes/{node}/tasks/{upid}/status` (`running`, then `stopped` with `exitstatus` "OK"
or the error) and `/log` (numbered lines). The log ends with "TASK OK" or
"TASK ERROR: <why>", as pveproxy's do.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollup.lab.proxmox.failure import PveFailure

log = logging.getLogger(__name__)
KEPT = 2000  # finished tasks remembered, newest first out last
Log = Callable[[str], None]


@dataclass
class Task:
    upid: str
    node: str
    kind: str  # "qmigrate", "qmstart", "qmshutdown", "aptupdate", ...
    id: str  # what it works on: a VM id, or ""
    user: str
    started: float
    lines: list[str] = field(default_factory=list)
    exitstatus: str | None = None  # None while it runs

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "upid": self.upid,
            "node": self.node,
            "type": self.kind,
            "id": self.id,
            "user": self.user,
            "starttime": int(self.started),
            "pid": int(self.upid.split(":")[2], 16),
            "status": "running" if self.exitstatus is None else "stopped",
        }
        if self.exitstatus is not None:
            found["exitstatus"] = self.exitstatus
        return found


class Tasks:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._pids = itertools.count(os.getpid() * 16)

    def start(self, node: str, kind: str, on: str, user: str, work: Callable[[Log], None]) -> str:
        """Run `work` (given a function that adds a log line) as a task; its UPID."""
        now = time.time()
        pid = next(self._pids) & 0xFFFFFFFF
        upid = (
            f"UPID:{node}:{pid:08X}:{pid * 7 & 0xFFFFFFFF:08X}:{int(now):08X}:{kind}:{on}:{user}:"
        )
        task = Task(upid, node, kind, on, user, now)
        with self._lock:
            self._tasks[upid] = task
            while len(self._tasks) > KEPT:
                oldest = next(iter(self._tasks))
                if self._tasks[oldest].exitstatus is None:
                    break
                del self._tasks[oldest]
        threading.Thread(target=self._run, args=(task, work), daemon=True, name=kind).start()
        return upid

    def _run(self, task: Task, work: Callable[[Log], None]) -> None:
        def add(line: str) -> None:
            with self._lock:
                task.lines.append(line)

        try:
            work(add)
        except PveFailure as failure:
            self._end(task, failure.message)
        except Exception as error:  # a task's worker dies with its error in the log
            log.debug("task %s failed", task.upid, exc_info=True)
            self._end(task, str(error) or type(error).__name__)
        else:
            self._end(task, "")

    def _end(self, task: Task, error: str) -> None:
        with self._lock:
            if error:
                task.lines.append(f"TASK ERROR: {error}")
                task.exitstatus = error
            else:
                task.lines.append("TASK OK")
                task.exitstatus = "OK"

    def find(self, node: str, upid: str) -> Task:
        if not upid.startswith("UPID:"):
            raise PveFailure(400, f"unable to parse worker upid '{upid}'")
        with self._lock:
            task = self._tasks.get(upid)
        if task is None or task.node != node:
            raise PveFailure(500, f"no such task '{upid}' on node {node}")
        return task

    def log_of(self, task: Task, start: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(task.lines)
        if not lines:
            return [{"n": 1, "t": "no content"}]  # as pveproxy answers for an empty log
        return [
            {"n": n + 1, "t": text} for n, text in enumerate(lines) if start <= n < start + limit
        ]
