"""The simulated XenServer/XCP-ng pool: hosts, VMs, SRs, tasks, timing and events.

Build one from a Layout (lab/generator.py), serve it with lab/xapi.py, close it when done:

    pool = LabPool(generate(hosts=3, vms=12, seed=1), speed=20)
    ...
    pool.close()

Memory accounting (exact at every instant; the XenAPI driver reads the same numbers):
- a VM's footprint = memory_static_max + its memory_overhead;
- a host's capacity for guests = memory_total - host.memory_overhead - dom0's footprint;
- host_metrics.memory_free = capacity - footprints of the running/paused VMs resident on
  it - footprints of the VMs migrating in. A migrating VM stays resident on its source
  until it lands, so it holds memory on both ends for the whole migration.
So a reader computes Host.memory_overhead = host.memory_overhead + dom0 footprint and
VM.memory = memory_static_max + memory_overhead, and memory_free matches.

Timing (simulated seconds, all divided by `speed`): a live migration lasts footprint /
`bandwidth` (1 GiB/s), at most `migrations_per_host` (3) at once out of a source host,
extra ones queue; a host goes down 10 s after host.reboot returns and is enabled again
`reboot_seconds` (90) later: API back after 5/6 of it, host enabled at the end.

Thread-safety: one lock guards every object; calls that take time (migrations,
evacuations) wait on its condition, so other calls go on; the scheduler thread drives
reboots and API drops.

What the pool's objects do lives beside it, as functions of the pool: lifecycle.py (host
reboots), migration.py, power.py, placement.py, tasks.py, fault_state.py, records.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from rollup.lab.faults import Faults
from rollup.lab.generator import generate
from rollup.lab.layout import Layout
from rollup.lab.machine import HostMachine, MemoryMachine
from rollup.lab.package_seed import seeded_rpmdb
from rollup.lab.packages import Repository, stream_of
from rollup.lab.xapi import fault_state, records, versions
from rollup.lab.xapi.events import EventLog
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import NULL, SimHost, SimNetwork, SimSR, SimTask, SimVM, ref_for
from rollup.lab.xapi.repository import seed_repository
from rollup.lab.xapi.scheduler import Scheduler
from rollup.model import GiB

# The pool's networks: management, and one kept for live migrations.
NETWORKS = (("Pool-wide network associated with eth0", "xenbr0"), ("Migration", "xenbr1"))


class LabPool:
    def __init__(
        self,
        layout: Layout,
        speed: float = 20.0,
        machines: dict[str, HostMachine] | None = None,
        faults: Faults | None = None,
        bandwidth: int = GiB,
        migrations_per_host: int = 3,
        reboot_seconds: float = 90.0,
        events_kept: int = 10000,
        repository: Repository | None = None,
        up_to_date: bool = False,
    ) -> None:
        self.layout = layout
        self.bandwidth = bandwidth
        self.migrations_per_host = migrations_per_host
        self.reboot_seconds = reboot_seconds
        self.scheduler = Scheduler(speed)
        self.events = EventLog(events_kept)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.closed = False
        self._watchers: list[Callable[[], None]] = []
        self.migrating_out: dict[str, int] = {}
        self.sessions: dict[str, str] = {}  # session ref → user
        self.faults = Faults()
        self.vm_failures: dict[str, int | None] = {}  # VM ref → failures still to come
        self.apply_failures: dict[str, int | None] = {}  # host ref → refusals to come
        # updater.py's operation lock per host: host ref → the operation holding it.
        self.plugin_operations: dict[str, str] = {}
        self.api_down_until = 0.0  # master API drop (simulated time)
        self.api_drop_armed = False  # a `next-reboot` drop waits for the master's reboot

        self.uuid = layout.pool_uuid
        self.ref = ref_for(layout.pool_uuid)
        self.name = layout.pool_name
        self.ha_enabled = False
        self.other_config: dict[str, str] = {}
        self.hosts: dict[str, SimHost] = {}
        self.vms: dict[str, SimVM] = {}
        self.srs: dict[str, SimSR] = {}
        self.networks: dict[str, SimNetwork] = {}
        for index, (name, bridge) in enumerate(NETWORKS):
            network_uuid = str(uuid.uuid5(uuid.UUID(layout.pool_uuid), f"network-{index}"))
            ref = ref_for(network_uuid)
            self.networks[ref] = SimNetwork(ref, network_uuid, name, bridge)
        self.tasks: dict[str, SimTask] = {}
        self.shared_sr = ref_for(layout.shared_sr_uuid)
        self.srs[self.shared_sr] = SimSR(
            self.shared_sr, layout.shared_sr_uuid, "Shared storage", "nfs", True
        )
        machines = machines or {}
        now = self.now()
        by_name: dict[str, str] = {}
        for spec in layout.hosts:
            host = SimHost(
                ref=ref_for(spec.uuid),
                uuid=spec.uuid,
                name=spec.name,
                address=spec.address,
                memory_total=spec.memory_total,
                memory_overhead=spec.memory_overhead,
                version=spec.version,
                metrics_ref=ref_for(spec.metrics_uuid),
                metrics_uuid=spec.metrics_uuid,
                dom0=ref_for(spec.dom0_uuid),
                local_sr=ref_for(spec.local_sr_uuid),
                machine=machines.get(spec.name) or MemoryMachine(spec.name),
                boot_time=now - 86400,
                agent_start_time=now - 86400,
            )
            self.stamp_boot(host)
            self.hosts[host.ref] = host
            by_name[spec.name] = host.ref
            self.srs[host.local_sr] = SimSR(
                host.local_sr, spec.local_sr_uuid, f"Local storage on {spec.name}", "lvm",
                False, host.ref,
            )  # fmt: skip
            self.vms[host.dom0] = SimVM(
                ref=host.dom0,
                uuid=spec.dom0_uuid,
                name=f"Control domain on host: {spec.name}",
                memory=spec.dom0_memory,
                memory_overhead=max(2**20, round(spec.dom0_memory / 100 / 2**20) * 2**20),
                power_state="Running",
                resident_on=host.ref,
                affinity=host.ref,
                is_control_domain=True,
                domid=0,
            )
        self.master = by_name[layout.master]
        self.repository = repository or seed_repository(layout)
        # XenServer's update repository (lab/xapi/updates.py): enabled, and synced when
        # the lab started; `rollup lab publish` adds what the next sync fetches.
        repository_uuid = str(uuid.uuid5(uuid.UUID(layout.pool_uuid), "repository"))
        self.repository_uuid, self.repository_ref = repository_uuid, ref_for(repository_uuid)
        self.update_repositories = [self.repository_ref]
        self.synced_serial = self.repository.serial
        self.last_update_sync = self.now()  # lab time of the last pool.sync_updates
        self.pool_operations: dict[str, str] = {}  # current blocking ops: key → name
        self._seed_packages(up_to_date)
        for host in self.hosts.values():
            versions.read_running(self, host, xen=True)
        for domid, spec in enumerate(layout.vms, start=1):
            pin_host = by_name[spec.pin_host] if spec.pin_host else NULL
            vm = SimVM(
                ref=ref_for(spec.uuid),
                uuid=spec.uuid,
                name=spec.name,
                memory=spec.memory,
                memory_overhead=spec.memory_overhead,
                power_state=spec.power_state,
                resident_on=by_name[spec.host] if spec.host else NULL,
                affinity=by_name[spec.affinity] if spec.affinity else NULL,
                ha_priority=spec.ha_priority,
                pin=spec.pin,
                pin_host=pin_host,
                local_sr=self.hosts[pin_host].local_sr if spec.pin == "local-sr" else NULL,
                domid=domid if spec.power_state == "Running" else -1,
                # A halted VM with a home is one its admin starts with that host.
                other_config={"auto_poweron": "true"}
                if spec.power_state == "Halted" and spec.affinity
                else {},
            )
            self.vms[vm.ref] = vm
        with self.lock:
            versions.update_rolling_upgrade(self)
        versions.start_db_gc(self)
        self.set_faults(faults or Faults())

    def _seed_packages(self, up_to_date: bool) -> None:
        """Hosts whose disk holds no packages yet get their stream's: some updates behind,
        or all of them (`up_to_date`)."""
        hosts = list(self.hosts.values())
        for position, host in enumerate(hosts):
            if host.machine.packages() is None:
                stream = stream_of(host.version)
                rpmdb = seeded_rpmdb(
                    self.repository, stream, position, len(hosts), time.time(), up_to_date
                )
                host.machine.set_packages(rpmdb)

    @classmethod
    def generate(
        cls,
        hosts: int = 3,
        vms: int = 12,
        seed: int = 0,
        address_prefix: str = "127.0.10.",
        **options: Any,
    ) -> LabPool:
        """A pool from the generator: options are LabPool's (speed, machines, faults...)."""
        return cls(generate(hosts, vms, seed, address_prefix), **options)

    # ---- clock, lifecycle, watchers -------------------------------------------------

    @property
    def speed(self) -> float:
        return self.scheduler.speed

    def now(self) -> float:
        return self.scheduler.now()

    def resume_clock(self, at: float) -> None:
        """Go on from simulated time `at` (a restored lab), never back from now.

        rollup compares boot_time values read before and after a lab restart: a clock that
        went back would hide the next reboot.
        """
        # The scheduler has no public setter; its epoch is where simulated time starts.
        self.scheduler._epoch += max(0.0, at - self.scheduler.now())

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()
        self.scheduler.close()
        self.events.close()
        for host in self.hosts.values():
            host.machine.close()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (without the lock) whenever a host's API may open or close."""
        self._watchers.append(callback)

    def notify_watchers(self) -> None:
        self.events.wake()
        for callback in list(self._watchers):
            callback()

    def api_up(self, host_ref: str) -> bool:
        """Whether the host's API listener accepts connections now."""
        with self.lock:
            host = self.hosts[host_ref]
            if not host.live or self.closed or host.agent_down:
                return False
            return not (host_ref == self.master and self.now() < self.api_down_until)

    # ---- lookups ---------------------------------------------------------------------

    def host(self, ref: str) -> SimHost:
        if ref not in self.hosts:
            raise XapiFailure("HANDLE_INVALID", "host", ref)
        return self.hosts[ref]

    def vm(self, ref: str) -> SimVM:
        if ref not in self.vms:
            raise XapiFailure("HANDLE_INVALID", "VM", ref)
        return self.vms[ref]

    def host_named(self, name: str) -> SimHost:
        for host in self.hosts.values():
            if name in (host.name, host.uuid, host.ref):
                return host
        raise KeyError(name)

    def vm_named(self, name: str) -> SimVM:
        for vm in self.vms.values():
            if name in (vm.name, vm.uuid, vm.ref):
                return vm
        raise KeyError(name)

    def host_by_address(self, address: str) -> SimHost | None:
        return next((h for h in self.hosts.values() if h.address == address), None)

    def resident_vms(self, host_ref: str) -> list[SimVM]:
        return [
            vm
            for vm in self.vms.values()
            if vm.resident_on == host_ref and vm.power_state in ("Running", "Paused")
        ]

    # ---- memory accounting (see the module docstring) ------------------------------

    def capacity(self, host_ref: str) -> int:
        host = self.hosts[host_ref]
        return host.memory_total - host.memory_overhead - self.vms[host.dom0].footprint

    def memory_free(self, host_ref: str) -> int:
        with self.lock:
            used = sum(
                vm.footprint
                for vm in self.vms.values()
                if not vm.is_control_domain
                and (
                    vm.migrating_to == host_ref
                    or (vm.resident_on == host_ref and vm.power_state in ("Running", "Paused"))
                )
            )
            return self.capacity(host_ref) - used

    # ---- events ------------------------------------------------------------------------

    def emit(self, obj: Any, operation: str = "mod") -> None:
        at = self.now()
        if isinstance(obj, SimHost):
            self.events.emit("host", operation, obj.ref, records.host_record(self, obj), at)
            metrics = records.host_metrics_record(self, obj)
            self.events.emit("host_metrics", operation, obj.metrics_ref, metrics, at)
        elif isinstance(obj, SimVM):
            self.events.emit("VM", operation, obj.ref, records.vm_record(self, obj), at)
        elif isinstance(obj, SimTask):
            self.events.emit("task", operation, obj.ref, records.task_record(self, obj), at)
        elif obj is self:
            self.events.emit("pool", operation, self.ref, records.pool_record(self), at)
        self.changed.notify_all()

    def emit_pool(self) -> None:
        """The pool and its repository changed (operations, repositories, a sync)."""
        self.emit(self)
        at = self.now()
        record = records.repository_record(self)
        self.events.emit("repository", "mod", self.repository_ref, record, at)

    def emit_vm_move(self, vm: SimVM, *host_refs: str) -> None:
        self.emit(vm)
        for ref in dict.fromkeys(host_refs):
            if ref in self.hosts:
                self.emit(self.hosts[ref])

    # ---- faults (lab/xapi/fault_state.py) -------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force; unknown host or VM names are refused."""
        fault_state.put_in_force(self, faults)

    # ---- pool --------------------------------------------------------------------------

    def add_to_other_config(self, key: str, value: str) -> None:
        with self.lock:
            if key in self.other_config:
                raise XapiFailure("MAP_DUPLICATE_KEY", "pool", "other_config", self.ref, key)
            self.other_config[key] = value
            self.emit(self)

    def remove_from_other_config(self, key: str) -> None:
        with self.lock:
            if self.other_config.pop(key, None) is not None:
                self.emit(self)

    def set_ha(self, enabled: bool) -> None:
        with self.lock:
            if enabled and "rolling_upgrade_in_progress" in self.other_config:
                raise XapiFailure("NOT_SUPPORTED_DURING_UPGRADE")
            self.ha_enabled = enabled
            self.emit(self)

    def stamp_boot(self, host: SimHost) -> None:
        host.other_config["boot_time"] = f"{host.boot_time:.3f}"
        host.other_config["agent_start_time"] = f"{host.agent_start_time:.3f}"

    def records_of(self, cls: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {ref: self.record(cls, ref) for ref in self.refs(cls)}

    def refs(self, cls: str) -> Iterable[str]:
        with self.lock:
            return records.refs_of(self, cls)

    def record(self, cls: str, ref: str) -> dict[str, Any]:
        with self.lock:
            return records.record_of(self, cls, ref)
