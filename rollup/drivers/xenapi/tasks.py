"""Waiting on XenAPI tasks through event.from, with polling only when events fail.

An `Async.*` call returns a task ref; the task's status and progress change as the
work runs. Watching `event.from(["task"], token, timeout)` wakes us on each change
without polling; a pool that cannot serve events is polled at a gentle rate.
"""

from __future__ import annotations

import logging
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any
from xml.parsers.expat import ExpatError

from rollup.drivers import Progress
from rollup.drivers.xenapi.session import Session
from rollup.errors import DriverError

log = logging.getLogger("rollup.drivers.xenapi")

FINISHED = frozenset({"success", "failure", "cancelled"})
TICK_SECONDS = 15.0  # how often `watch` says a long task is still running


def watch(
    api: Session,
    task: str,
    what: str,
    progress: Progress | None = None,
    deadline: float | None = None,
    tick: Callable[[float], None] | None = None,
) -> Mapping[str, Any] | None:
    """The task's final record, or None if `deadline` (monotonic) passed first.

    Reports `progress` (0..1) as it changes, and 1.0 on success; `tick(seconds since it
    started)` every TICK_SECONDS, for work that lasts minutes and whose task may show no
    progress (a plugin call's does not).
    """
    token: str | None = _token(api, what)
    record: Mapping[str, Any] = api.call(what, "task.get_record", task)
    reported = -1.0
    started = ticked = time.monotonic()
    while True:
        status = str(record.get("status", ""))
        fraction = _fraction(record, 1.0 if status == "success" else reported)
        if progress is not None and fraction > reported:
            progress(fraction)
            reported = fraction
        if status in FINISHED:
            return record
        now = time.monotonic()
        remaining = None if deadline is None else deadline - now
        if remaining is not None and remaining <= 0:
            return None
        wait = (
            api.timing.event_timeout
            if remaining is None
            else min(remaining, api.timing.event_timeout)
        )
        if tick is not None:
            if now - ticked >= TICK_SECONDS:
                tick(now - started)
                ticked = now
            wait = min(wait, max(0.0, ticked + TICK_SECONDS - now))
        if token is None:
            time.sleep(min(api.timing.poll_interval, wait))
            record = api.call(what, "task.get_record", task)
            continue
        try:
            batch = api.call(what, "event.from", ["task"], token, float(wait))
        except DriverError as exc:
            if exc.code in _NOT_SERVED:
                log.warning("%s: event.from failed (%s); polling the task instead", what, exc)
                token = None
            elif exc.code == "EVENTS_LOST":
                token = _token(api, what)
            else:
                raise
            record = api.call(what, "task.get_record", task)
            continue
        token = batch["token"]
        for event in batch.get("events", ()):
            if event.get("ref") != task:
                continue
            if event.get("operation") == "del":
                raise DriverError(f"could not {what}: its task {task} vanished")
            record = event.get("snapshot") or api.call(what, "task.get_record", task)


def run_to_end(
    api: Session,
    method: str,
    args: tuple[Any, ...],
    what: str,
    deadline: float,
    tick: Callable[[float], None],
    late: str,
) -> Mapping[str, Any]:
    """Start `method` (an Async call), follow its task to its end within `deadline`, and
    answer its final record, success or not; past the deadline a DriverError
    INSTALL_TIMEOUT saying `late`, before it starts when no time is left. The task is
    destroyed either way."""
    if time.monotonic() >= deadline:
        raise DriverError(f"could not {what}: {late}", "INSTALL_TIMEOUT")
    task = api.call(what, method, *args, idempotent=False)
    try:
        record = watch(api, task, what, deadline=deadline, tick=tick)
    finally:
        destroy(api, task)
    if record is None:
        raise DriverError(f"could not {what}: {late}", "INSTALL_TIMEOUT")
    return record


def task_value(result: str) -> Any:
    """A finished task's result: xapi gives it as an XML-RPC `<value>` fragment."""
    if not result.strip():
        return ""
    body = f"<methodResponse><params><param>{result}</param></params></methodResponse>"
    try:
        return xmlrpc.client.loads(body)[0][0]
    except (xmlrpc.client.ResponseError, ExpatError, IndexError):
        return result.removeprefix("<value>").removesuffix("</value>")


def destroy(api: Session, task: str) -> None:
    """Finished tasks stay until destroyed; a leftover one is harmless, so quietly."""
    try:
        api.call_once("task.destroy", task)
    except Exception as exc:
        log.debug("could not destroy task %s: %s", task, exc)


def failure_of(record: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """A finished task's (code, params); a cancelled task without error info says so."""
    info = [str(item) for item in record.get("error_info") or ()]
    if info:
        return info[0], tuple(info[1:])
    return ("TASK_CANCELLED", ()) if record.get("status") == "cancelled" else ("UNKNOWN_ERROR", ())


# A pool that answers these to event.from cannot serve events at all: poll instead.
_NOT_SERVED = frozenset({"MESSAGE_METHOD_UNKNOWN", "MESSAGE_PARAMETER_COUNT_MISMATCH"})


def _token(api: Session, what: str) -> str | None:
    # Token "" returns every task at once; we only keep the token to wait from there.
    try:
        return str(api.call(what, "event.from", ["task"], "", 0.0)["token"])
    except DriverError as exc:
        if exc.code not in _NOT_SERVED:
            raise
        log.warning("%s: event.from unavailable (%s); polling the task instead", what, exc)
        return None


def _fraction(record: Mapping[str, Any], floor: float) -> float:
    try:
        value = float(record.get("progress", 0.0))
    except (TypeError, ValueError):
        value = 0.0
    return max(0.0, min(1.0, max(value, floor)))
