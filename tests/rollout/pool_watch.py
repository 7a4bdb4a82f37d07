"""What the pool looked like at every change during a run, from the lab's own event log.

The lab runs in the test process, so its event log (what `event.from` serves any XenAPI
client) can be followed directly: no client connection to lose while the master
reboots. Each entry is the pool's HA flag and the set of disabled hosts right after one
change, in the order the pool saw the changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rollup.lab.xapi.pool import LabPool


@dataclass(frozen=True)
class Moment:
    ha_enabled: bool
    disabled: frozenset[str]  # host names


@dataclass
class PoolWatch:
    pool: LabPool
    moments: list[Moment] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PoolWatch:
        with self.pool.lock:
            token = self.pool.events.token
            ha = self.pool.ha_enabled
            enabled = {h.name: h.enabled for h in self.pool.hosts.values()}
        self.moments.append(Moment(ha, _disabled(enabled)))
        self._thread = threading.Thread(target=self._follow, args=(token, ha, enabled))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _follow(self, token: str, ha: bool, enabled: dict[str, bool]) -> None:
        # One last read after the stop, so the final state is always in.
        while True:
            stopping = self._stop.is_set()
            events, token = self.pool.events.since(token, {"pool", "host"}, 0.2)
            for event in events:
                if event.cls == "pool":
                    ha = bool(event.snapshot["ha_enabled"])
                else:
                    enabled[event.snapshot["name_label"]] = bool(event.snapshot["enabled"])
                moment = Moment(ha, _disabled(enabled))
                if moment != self.moments[-1]:
                    self.moments.append(moment)
            if stopping and not events:
                return

    def ha_while_a_host_was_out(self) -> set[bool]:
        """Every HA value seen while at least one host was disabled."""
        return {m.ha_enabled for m in self.moments if m.disabled}


def _disabled(enabled: dict[str, bool]) -> frozenset[str]:
    return frozenset(name for name, on in enabled.items() if not on)
