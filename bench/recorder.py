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
  controller time, and bench/window.py converts it back to real seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rollup.lab.objects import SimHost, SimVM
from rollup.lab.pool import LabPool


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
            if enabled and not obj.enabled and self.first_disable is None:
                self.first_disable = now
            if obj.enabled and not enabled:
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
            if before and before[0] == "Running" == state[0] and before[1] != state[1]:
                self.migrations += 1
                self.bytes_moved += obj.footprint

    def _track_busy(self, obj: Any, now: float) -> None:
        if isinstance(obj, SimHost):
            active = obj.phase != "up"
        elif isinstance(obj, SimVM):
            active = obj.migrating_to is not None
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
