"""The pool's records kept current by `event.from`, as Xen Orchestra keeps its cache.

A snapshot needs every VM record. Reading them with `VM.get_all_records` costs a few MB
of XML per snapshot on a pool of thousands of VMs, and a run takes several snapshots per
host. The view reads everything once (a token from `event.inject`, then
`get_all_records`), then only what changed since its token (`event.from`).

Whenever the incremental read cannot be trusted, the view starts over with a full read,
as XO refetches: the token was refused (`EVENTS_LOST`), the session was lost or renewed
since the last read (the master rebooted, xapi restarted), a call failed half-way, or the
pool counts other numbers of objects than the view holds. A pool that cannot serve
events at all is read with `get_all_records` every time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rollup.drivers.xenapi.session import Session
from rollup.errors import DriverError

log = logging.getLogger("rollup.drivers.xenapi")

Record = Mapping[str, Any]

# event class (lower case, as xapi names it in events) → the get_all_records class
CLASSES = {"pool": "pool", "host": "host", "host_metrics": "host_metrics", "vm": "VM"}

# Answers of a pool that has no usable event.from: read everything each time instead.
NO_EVENTS = frozenset({"MESSAGE_METHOD_UNKNOWN", "MESSAGE_PARAMETER_COUNT_MISMATCH"})


class PoolView:
    """`view.read()`: {class: {ref: record}} for pool, host, host_metrics and VM, current."""

    def __init__(self, api: Session, events: bool = True) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Record]] = {}
        self._token: str | None = None
        self._resets = -1
        self._events = events  # False: every read is a full one (bench/snapshots.py)
        self.full_reads = 0  # how often everything was read, for tests and debug logs

    def read(self) -> dict[str, dict[str, Record]]:
        with self._lock:
            if not self._events:
                return self._read_all()
            try:
                self._refresh()
            except BaseException as exc:
                self._token = None  # a read that failed half-way is never built upon
                if not (isinstance(exc, DriverError) and exc.code in NO_EVENTS):
                    raise
                log.debug("the pool serves no events (%s): reading every record", exc.code)
                self._events = False
                return self._read_all()
            # Records are replaced, never changed in place: shallow copies are enough.
            return {cls: dict(records) for cls, records in self._records.items()}

    def _refresh(self) -> None:
        if self._token is not None and self._resets == self.api.resets:
            batch: Mapping[str, Any] | None
            try:
                batch = self._since(self._token)
            except DriverError as exc:
                if exc.code != "EVENTS_LOST":
                    raise
                log.debug("the pool lost our event token: reading every record again")
                batch = None
            # A new session on the way (xapi restarted) makes the old token meaningless.
            if batch is not None and self._resets == self.api.resets:
                self._apply(batch)
                if self._counts_agree(batch):
                    return
                log.debug("the pool's object counts differ from our view: reading it again")
        self._read_from_token()

    def _read_from_token(self) -> None:
        """Token first, then the records, as XO does: a change after the token is an event."""
        call = self.api.call
        resets = self.api.resets
        (pool_ref, *_) = call("read the pool", "pool.get_all")
        token = call("mark the pool's events", "event.inject", "pool", pool_ref)
        self._records = self._read_all()
        self._token, self._resets = str(token), resets
        self.full_reads += 1

    def _counts_agree(self, batch: Mapping[str, Any]) -> bool:
        counts = {str(k).lower(): v for k, v in (batch.get("valid_ref_counts") or {}).items()}
        return all(
            int(counts[event_cls]) == len(self._records[cls])
            for event_cls, cls in CLASSES.items()
            if event_cls in counts
        )

    def _since(self, token: str) -> Mapping[str, Any]:
        return self.api.call(  # type: ignore[no-any-return]
            "read what changed in the pool", "event.from", list(CLASSES), token, 0.0
        )

    def _apply(self, batch: Mapping[str, Any]) -> None:
        for event in batch.get("events", ()):
            cls = CLASSES.get(str(event.get("class", "")).lower())
            if cls is None:
                continue
            ref = str(event.get("ref"))
            if event.get("operation") == "del":
                self._records[cls].pop(ref, None)
            else:
                self._records[cls][ref] = event.get("snapshot") or {}
        self._token = str(batch["token"])

    def _read_all(self) -> dict[str, dict[str, Record]]:
        call = self.api.call
        return {
            cls: call(f"read the {cls} records", f"{cls}.get_all_records")
            for cls in CLASSES.values()
        }
