"""Waiting for a rebooted host to come back: newer boot_time, live and enabled.

xapi stamps `other_config.boot_time` when a host boots and re-enables it once its
toolstack is up. We wake on host and host_metrics events instead of polling; when the
API itself goes away (the master rebooting) we reconnect with backoff until the deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rollup.drivers.xenapi.records import NULL_REF
from rollup.drivers.xenapi.session import Session, Timing
from rollup.errors import DriverError, HostTimeout, TransientDriverError
from rollup.model import Host

log = logging.getLogger("rollup.drivers.xenapi")

CLASSES = ["host", "host_metrics"]


@dataclass(frozen=True)
class HostState:
    """Enough of a host to tell whether it is back from a reboot."""

    metrics: str
    boot_mark: str
    enabled: bool
    live: bool
    mark: str = "boot_time"  # which other_config stamp boot_mark holds

    def back(self, since: str) -> bool:
        return booted_since(self.boot_mark, since) and self.live and self.enabled

    def describe(self) -> str:
        return f"{self.mark} {self.boot_mark or '?'}, live {self.live}, enabled {self.enabled}"


def booted_since(boot_mark: str, since: str) -> bool:
    """A boot_time newer than `since` (seconds since epoch), or merely different if odd."""
    if not boot_mark:
        return False
    if not since:
        return True
    try:
        return float(boot_mark) > float(since)
    except ValueError:
        return boot_mark != since


def wait_back(
    api: Session,
    host: str,
    since: str,
    timeout: float,
    find: Callable[[str], tuple[str, str]],
    read_host: Callable[[str], Host],
    mark: str = "boot_time",
) -> Host:
    """Block until host `host` (uuid) is back; `find` gives (ref, name) with no retries,
    `read_host` the model Host once it is back. HostTimeout after `timeout` seconds.
    `mark` is the other_config stamp that must be newer than `since`: `boot_time` after
    a reboot, `agent_start_time` after a toolstack restart."""
    timing = api.timing
    deadline = time.monotonic() + timeout
    # A short wait (a test, a fast lab) gets proportionally short pauses.
    cap = min(timing.backoff_cap, max(timing.backoff_start, timeout / 20))
    name, ref, token = host, None, None
    state: HostState | None = None
    last = "not reached yet"
    delays = _backoff(timing, cap)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HostTimeout(
                f"host {name} did not come back within {duration(timeout)} (last seen: {last})",
                "HOST_TIMEOUT",
                (host, since),
            )
        try:
            if ref is None:
                ref, name = find(host)
            if token is None:
                # Token first, then the state: a change after the read is an event after it.
                token = _token(api, f"wait for host {name}")
                state = read_state(api, ref, mark)
                last = state.describe()
                if state.back(since):
                    return read_host(host)
            batch = api.call(
                f"wait for host {name}",
                "event.from",
                CLASSES,
                token,
                float(min(remaining, timing.event_timeout)),
                retry_seconds=0,
            )
            token = batch["token"]
            delays = _backoff(timing, cap)
            metrics = state.metrics if state else NULL_REF
            if any(_touches(event, ref, metrics) for event in batch["events"]):
                state = read_state(api, ref, mark)
                last = state.describe()
                if state.back(since):
                    return read_host(host)
        except TransientDriverError as exc:
            # The API went away (master rebooting) or is busy: back off, then start over
            # with a fresh token, as the old one may belong to the xapi that went down.
            token = None
            delay = min(next(delays), max(0.0, deadline - time.monotonic()))
            log.debug("waiting for host %s: %s; retrying in %.1fs", name, exc, delay)
            last = f"API unreachable ({exc.code or 'connection lost'})"
            time.sleep(delay)
        except DriverError as exc:
            if exc.code != "EVENTS_LOST":
                raise
            token = None


def read_state(api: Session, ref: str, mark: str = "boot_time") -> HostState:
    record = api.call("read a host", "host.get_record", ref, retry_seconds=0)
    metrics = record.get("metrics", NULL_REF)
    live = False
    if metrics != NULL_REF:
        live = bool(
            api.call("read host metrics", "host_metrics.get_live", metrics, retry_seconds=0)
        )
    return HostState(
        metrics=metrics,
        boot_mark=str(record.get("other_config", {}).get(mark, "")),
        enabled=bool(record.get("enabled")),
        live=live,
        mark=mark,
    )


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f} min"


def _token(api: Session, what: str) -> str:
    return str(api.call(what, "event.from", CLASSES, "", 0.0, retry_seconds=0)["token"])


def _backoff(timing: Timing, cap: float) -> Iterator[float]:
    return Timing(backoff_start=min(timing.backoff_start, cap), backoff_cap=cap).backoff()


def _touches(event: Mapping[str, Any], host_ref: str, metrics_ref: str) -> bool:
    return event.get("ref") in (host_ref, metrics_ref)
