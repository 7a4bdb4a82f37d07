"""The pool's tasks: Async calls run in a thread behind a task, with progress and cancel.

A task ends as xapi's do: `success` with the action's result, `cancelled` when the action
gave up on a cancel request, `failure` with the XenAPI error (a lab bug included, as
INTERNAL_ERROR). It stays until `task.destroy`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimTask, ref_for

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def run_async(pool: LabPool, name: str, action: Callable[[SimTask], Any]) -> str:
    """Start `action(task)` in a thread behind a new task; return the task ref."""
    with pool.lock:
        task_uuid = str(uuid.uuid4())
        task = SimTask(ref_for(task_uuid), task_uuid, name, pool.master, pool.now())
        pool.tasks[task.ref] = task
        pool.emit(task, "add")
    threading.Thread(target=_run, args=(pool, task, action), daemon=True).start()
    return task.ref


def _run(pool: LabPool, task: SimTask, action: Callable[[SimTask], Any]) -> None:
    try:
        result = action(task)
    except XapiFailure as failure:
        outcome = ("cancelled" if failure.code == "TASK_CANCELLED" else "failure", None)
        error = failure.details
    except Exception as exc:  # a lab bug must still end the task, as xapi would
        outcome, error = ("failure", None), ["INTERNAL_ERROR", repr(exc)]
    else:
        outcome, error = ("success", result), []
    with pool.lock:
        task.status, task.result = outcome
        task.error_info = error
        task.progress = 1.0
        task.finished = pool.now()
        if task.ref in pool.tasks:
            pool.emit(task)


def set_progress(pool: LabPool, task: SimTask | None, progress: float) -> None:
    if task is None:
        return
    with pool.lock:
        # Events only for visible steps, so a watcher is not flooded.
        if progress - task.progress >= 0.01 and task.ref in pool.tasks:
            task.progress = round(min(progress, 0.99), 3)
            pool.emit(task)


def get(pool: LabPool, ref: str) -> SimTask:
    if ref not in pool.tasks:
        raise XapiFailure("HANDLE_INVALID", "task", ref)
    return pool.tasks[ref]


def cancel(pool: LabPool, ref: str) -> None:
    with pool.lock:
        found = get(pool, ref)
        if found.status == "pending":
            found.cancel_requested = True
            found.status = "cancelling"
            pool.emit(found)


def destroy(pool: LabPool, ref: str) -> None:
    with pool.lock:
        found = get(pool, ref)
        del pool.tasks[ref]
        pool.emit(found, "del")
