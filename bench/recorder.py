"""What a lab pool went through, recorded from its own events: the referee of a run.

Both tools are judged by the same witness: the lab, which sees every host leave and
re-enter service and every VM land. `Recorder` wraps the pool's `emit` (every change the
lab makes goes through it, under the pool's lock) and keeps:

* the pool time of the first host disabled and of the last change (a VM landing,
  starting, or a host enabled): the maintenance window as the pool lives it;
* every live migration that landed (resident_on changed between two running hosts) and
  its footprint, so migrations are counted from what moved, not from what was planned;
* the wall time each host became enabled and live again after its reboot, for the
  reaction delay of the controller (bench/overhead.py);
* how long the pool was busy (a migration in flight or a host rebooting) and how long
  it sat idle waiting for its controller. The lab runs `speed` times faster than real
  time, but a controller's think time (API calls, SSH, Ansible) does not: idle time is
  controller time, and bench/window.py converts it back to real seconds;
* the same, host by host, for runs that upgrade several hosts at once (where one host's
  patch overlaps another's reboot, so the pool-wide split says little): each host's
  disable and enable times, its reboots, and every migration with its source and
  destination, all in pool seconds. bench/window.py cuts them by the plan's steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rollup.lab.xapi.objects import SimHost, SimVM
from rollup.lab.xapi.pool import LabPool


@dataclass
class Recorder:
    pool: LabPool
    first_disable: float | None = None  # pool seconds
    last_change: float | None = None
    migrations: int = 0
    bytes_moved: int = 0
    back_wall: dict[str, float] = field(default_factory=dict)  # host name → time.time()
    _vm_state: dict[str, tuple[str, str]] = field(default_factory=dict)
    _host_state: dict[str, tuple[bool, bool, float]] = field(default_factory=dict)
    _first_boot: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0  # pool seconds with something in flight, inside the window
    _in_flight: set[str] = field(default_factory=set)  # VMs migrating, hosts not up
    _busy_since: float | None = None
    # Per host (names), pool seconds: for bench/window.py's host-by-host accounting.
    disabled_at: dict[str, list[float]] = field(default_factory=dict)
    enabled_at: dict[str, list[float]] = field(default_factory=dict)
    down: list[tuple[str, float, float]] = field(default_factory=list)  # host, from, to
    moves: list[tuple[str, str, float, float]] = field(default_factory=list)  # src, dst, ...
    started: list[tuple[str, float]] = field(default_factory=list)  # host, VM started on it
    _down_since: dict[str, float] = field(default_factory=dict)
    _moving: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # VM ref → ...

    def __post_init__(self) -> None:
        with self.pool.lock:
            for vm in self.pool.vms.values():
                self._vm_state[vm.ref] = (vm.power_state, vm.resident_on)
            for host in self.pool.hosts.values():
                self._host_state[host.ref] = (host.enabled, host.live, host.boot_time)
                self._first_boot[host.ref] = host.boot_time
            original = self.pool.emit

            def emit(obj: Any, operation: str = "mod") -> None:
                original(obj, operation)
                self._see(obj)

            self.pool.emit = emit  # type: ignore[method-assign]

    def _see(self, obj: Any) -> None:
        now = self.pool.now()
        self._track_busy(obj, now)
        if isinstance(obj, SimHost):
            enabled, _, _ = self._host_state[obj.ref]
            self._host_state[obj.ref] = (obj.enabled, obj.live, obj.boot_time)
            if enabled and not obj.enabled:
                self.disabled_at.setdefault(obj.name, []).append(now)
                if self.first_disable is None:
                    self.first_disable = now
            if obj.enabled and not enabled:
                self.enabled_at.setdefault(obj.name, []).append(now)
                self.last_change = now
                if obj.live and obj.boot_time > self._first_boot[obj.ref]:
                    self.back_wall[obj.name] = time.time()
        elif isinstance(obj, SimVM) and not obj.is_control_domain:
            state = (obj.power_state, obj.resident_on)
            before = self._vm_state.get(obj.ref)
            if state == before:
                return
            self._vm_state[obj.ref] = state
            self.last_change = now
            if state[0] == "Running" and (not before or before[0] != "Running"):
                self.started.append((self._name(state[1]), now))
            if before and before[0] == "Running" == state[0] and before[1] != state[1]:
                self.migrations += 1
                self.bytes_moved += obj.footprint

    def _name(self, host_ref: str) -> str:
        host = self.pool.hosts.get(host_ref)
        return host.name if host is not None else host_ref

    def _track_busy(self, obj: Any, now: float) -> None:
        if isinstance(obj, SimHost):
            active = obj.phase != "up"
            if active and obj.name not in self._down_since:
                self._down_since[obj.name] = now
            elif not active and obj.name in self._down_since:
                self.down.append((obj.name, self._down_since.pop(obj.name), now))
        elif isinstance(obj, SimVM):
            active = obj.migrating_to is not None
            if active and obj.ref not in self._moving:
                self._moving[obj.ref] = (
                    self._name(obj.resident_on),
                    self._name(obj.migrating_to or ""),
                    now,
                )
            elif not active and obj.ref in self._moving:
                source, dest, since = self._moving.pop(obj.ref)
                self.moves.append((source, dest, since, now))
        else:
            return
        was_busy = bool(self._in_flight)
        if active:
            self._in_flight.add(obj.ref)
        else:
            self._in_flight.discard(obj.ref)
        if self._in_flight and not was_busy:
            self._busy_since = now
        elif was_busy and not self._in_flight and self._busy_since is not None:
            self.busy += now - self._busy_since
            self._busy_since = None

    def busy_between(self, host: str, start: float, end: float) -> float:
        """Pool seconds in [start, end] with `host` rebooting or a migration in flight out
        of it or into it: the lab's work on that host's step."""
        spans = [(a, b) for h, a, b in self.down if h == host]
        spans += [(a, b) for src, dst, a, b in self.moves if host in (src, dst)]
        total, reach = 0.0, start
        for a, b in sorted((max(a, start), min(b, end)) for a, b in spans):
            if a < b and b > reach:
                total += b - max(a, reach)
                reach = b
        return total

    @property
    def idle(self) -> float:
        """Pool seconds of the window in which the pool waited for its controller."""
        return max(0.0, self.window - self.busy)

    @property
    def window(self) -> float:
        """Pool seconds from the first host disabled to the last change."""
        if self.first_disable is None or self.last_change is None:
            return 0.0
        return self.last_change - self.first_disable
