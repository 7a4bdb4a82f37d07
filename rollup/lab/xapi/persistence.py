"""An in-process lab's durable state, so that `rollup resume` finds the pool it left.

An inventory's lab (RunningLab.start_for) lives inside rollup and dies with it; the pool
it simulates must not. Its state goes to `<lab dir>/pool-state.json` (0600), written
atomically (write, then rename) about once a second while the pool changes and once
more on a clean stop, so even a controller killed with SIGKILL leaves a recent state.

What is kept: the spec the pool was generated from (hosts, vms, seed, fill: a state is
only restored into the same layout), the lab clock, the pool's other_config (a
`rollup.lock` left by a killed controller, `rolling_upgrade_in_progress`) and
ha_enabled; per host its version, enabled, boot_time, agent_start_time, other_config,
update guidances and the installer it was prepared for; per VM its power state,
resident host, domid, other_config and guidances. Each host's disk (its root
directory: installed packages and version) is kept beside it, the lab's package
repository too (lab/xapi/repository.py).

In-flight operations are saved as SETTLED, i.e. as they will end, never half-way:
- a VM migrating lands on its destination (if that host is up; else it stays put);
- a host in any phase of a reboot has finished it: up, enabled (xapi enables it once
  started), booted at the version its disk holds (its old one under a
  `return_old_version` fault), with a boot_time of the save; the VMs still resident on a
  host that had not yet gone down are Halted, as its power-off would leave them; a host
  prepared for the installer comes back at its release with that release's base
  packages, its guidances acted on. Under a
  `no_return` fault it is saved down instead, and comes back when the fault is cleared;
- a toolstack restart (host.restart_agent) has finished: a new agent_start_time and the
  host enabled;
- what lives only in xapi's memory is dropped: tasks, sessions, evacuations in progress,
  an API drop.
The lab clock never goes back across a restore (rollup compares boot_time values taken
before and after), so a restored lab starts its clock at the saved time or later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.lab.packages import Installed, stream_of
from rollup.lab.releases import platform_version
from rollup.lab.xapi import versions
from rollup.lab.xapi.objects import NULL, SimHost, SimVM, major_minor

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

log = logging.getLogger("rollup")

STATE_FILE = "pool-state.json"
FORMAT = 1
SAVE_INTERVAL = 1.0  # real seconds: at most one write a second while the pool changes
POLL_INTERVAL = 0.2  # real seconds between looks for a change


def identity(
    hosts: int,
    vms: int,
    seed: int,
    fill: tuple[float, float],
    flavor: str = "xcp-ng",
    release: str = "",
) -> dict[str, Any]:
    """What a layout is generated from: a state applies only to the same one."""
    return {
        "hosts": hosts,
        "vms": vms,
        "seed": seed,
        "fill": [float(fill[0]), float(fill[1])],
        "flavor": flavor,
        "release": release,
    }


# ---- capturing ---------------------------------------------------------------------------


def capture(pool: LabPool, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pool's durable state, with in-flight operations settled (module docstring)."""
    with pool.lock:
        now = pool.now()
        hosts = {host.name: _host_state(pool, host, now) for host in pool.hosts.values()}
        vms = {
            vm.uuid: _vm_state(pool, vm, hosts)
            for vm in pool.vms.values()
            if not vm.is_control_domain
        }
        other_config = dict(pool.other_config)
        versions = {
            (state["platform_version"], major_minor(state["xapi_build"]))
            for state in hosts.values()
        }
        # As the pool will say once settled (a reboot in flight may end the mixed state).
        if len(versions) > 1:
            other_config["rolling_upgrade_in_progress"] = "true"
        else:
            other_config.pop("rolling_upgrade_in_progress", None)
        return {
            "format": FORMAT,
            "spec": dict(spec),
            "saved_at": time.time(),
            "clock": now,
            "pool": {
                "uuid": pool.uuid,
                "other_config": other_config,
                "ha_enabled": pool.ha_enabled,
                "repositories": list(pool.update_repositories),
                "synced_serial": pool.synced_serial,
                "last_update_sync": pool.last_update_sync,
            },
            "hosts": hosts,
            "vms": vms,
        }


def _host_state(pool: LabPool, host: SimHost, now: float) -> dict[str, Any]:
    version, live, enabled = host.version, host.live, host.enabled
    boot_time, agent_start_time = host.boot_time, host.agent_start_time
    faults = pool.faults.for_host(host.name, host.uuid)
    installer, fresh_install = host.installer, False
    xapi_build, xen_version = host.xapi_build, host.xen_version
    guidances = {level: list(names) for level, names in host.guidances.items()}
    if host.phase in ("going-down", "down"):
        if host.held_down or faults.no_return:
            live, enabled = False, False
        else:
            installed = host.machine.installed_version()
            if installer and not faults.return_old_version:
                version, fresh_install = installer, True
            elif installed and not faults.return_old_version:
                version = installed
            installer = None
            guidances = {level: [] for level in guidances}  # the reboot acted on them
            live, enabled = True, True
            xapi_build, xen_version = versions.installed(host)
            boot_time = agent_start_time = now
    elif host.phase == "booting":
        enabled = True  # xapi enables it once its toolstack has started
    elif host.agent_restarting:
        enabled, agent_start_time = True, now
        xapi_build = versions.installed(host)[0]  # the toolstack it restarts into
    other_config = dict(host.other_config)
    other_config["boot_time"] = f"{boot_time:.3f}"
    other_config["agent_start_time"] = f"{agent_start_time:.3f}"
    return {
        "uuid": host.uuid,
        "version": version,
        "platform_version": platform_version(version),
        "live": live,
        "enabled": enabled,
        "boot_time": boot_time,
        "agent_start_time": agent_start_time,
        "other_config": other_config,
        "installer": installer,  # prepared to boot the installer of this release
        "fresh_install": fresh_install,  # settled: the installer ran, its base packages
        "guidances": guidances,
        "last_software_update": host.last_software_update,
        "latest_synced_updates_applied": host.latest_synced_updates_applied,
        "last_update_hash": host.last_update_hash,
        "xapi_build": xapi_build,
        "xen_version": xen_version,
    }


def _vm_state(pool: LabPool, vm: SimVM, hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    power_state, resident_on, domid = vm.power_state, vm.resident_on, vm.domid
    if vm.migrating_to and not vm.migration_lost and pool.hosts[vm.migrating_to].phase == "up":
        resident_on = vm.migrating_to
    if resident_on != NULL and pool.hosts[resident_on].phase in ("going-down", "down"):
        # Its host's power-off halts it (or already did).
        power_state, resident_on, domid = "Halted", NULL, -1
    running = power_state in ("Running", "Paused")
    return {
        "name": vm.name,
        "power_state": power_state,
        "resident_on": pool.hosts[resident_on].name if running else None,
        "domid": domid if running else -1,
        "other_config": dict(vm.other_config),
        "guidances": {level: list(names) for level, names in vm.guidances.items()},
    }


# ---- files -------------------------------------------------------------------------------


def save(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically: a reader, or a controller killed mid-write, sees whole files only."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    # 0600 from the start: the pool's other_config may name the controller holding a lock.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=1, sort_keys=True)
    partial.replace(path)


def load(path: Path, spec: Mapping[str, Any], pool_uuid: str) -> tuple[dict[str, Any] | None, str]:
    """The saved state if it belongs to this spec and pool, else None and why not."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, ValueError) as error:
        return None, f"{path} is unreadable ({error})"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None, f"{path} is not a format-{FORMAT} lab state"
    if state.get("spec") != dict(spec):
        return None, f"{path} is for lab {state.get('spec')}, not {dict(spec)}"
    if state.get("pool", {}).get("uuid") != pool_uuid:
        return None, f"{path} is for another pool"
    return state, ""


# ---- restoring ---------------------------------------------------------------------------


def apply(pool: LabPool, state: Mapping[str, Any]) -> None:
    """Put a freshly built pool (same layout, nothing served yet) in the saved state.

    Raises KeyError or ValueError when the state names hosts or VMs the pool lacks.
    """
    with pool.lock:
        hosts = {name: pool.host_named(name) for name in state["hosts"]}
        vms = {vm_uuid: pool.vm_named(vm_uuid) for vm_uuid in state["vms"]}
        pool.resume_clock(float(state["clock"]))
        for name, saved in state["hosts"].items():
            host = hosts[name]
            host.version = str(saved["version"])
            host.boot_time = float(saved["boot_time"])
            host.agent_start_time = float(saved["agent_start_time"])
            host.other_config = {str(k): str(v) for k, v in saved["other_config"].items()}
            host.installer = saved.get("installer")
            host.last_software_update = float(saved.get("last_software_update", 0.0))
            host.latest_synced_updates_applied = str(
                saved.get("latest_synced_updates_applied", "unknown")
            )
            host.last_update_hash = str(saved.get("last_update_hash", ""))
            host.xapi_build = str(saved.get("xapi_build", host.xapi_build))
            host.xen_version = str(saved.get("xen_version", host.xen_version))
            host.guidances.update(saved.get("guidances", {}))
            if saved.get("fresh_install"):
                stream = stream_of(host.version)
                base = pool.repository.base(stream)
                host.machine.set_packages(
                    {b.name: Installed(b.version, b.release, time.time()) for b in base}
                )
                versions.read_running(pool, host, xen=True)  # the new release's
            pool.stamp_boot(host)
            if saved["live"]:
                host.live, host.enabled, host.phase = True, bool(saved["enabled"]), "up"
            else:
                # Held down by a no_return fault: the fault file, read next, says whether
                # it stays down or boots now.
                host.live, host.enabled, host.phase, host.held_down = False, False, "down", True
        for vm_uuid, saved in state["vms"].items():
            vm = vms[vm_uuid]
            resident = saved["resident_on"]
            if saved["power_state"] in ("Running", "Paused") and resident:
                vm.power_state = str(saved["power_state"])
                vm.resident_on = hosts[resident].ref
                vm.domid = int(saved["domid"])
            else:
                vm.power_state, vm.resident_on, vm.domid = "Halted", NULL, -1
            vm.other_config = {str(k): str(v) for k, v in saved["other_config"].items()}
            vm.guidances.update(saved.get("guidances", {}))
        saved_pool = state["pool"]
        pool.other_config = {str(k): str(v) for k, v in saved_pool["other_config"].items()}
        pool.ha_enabled = bool(saved_pool["ha_enabled"])
        # Labs saved before repositories were kept: one, synced when it was saved.
        pool.update_repositories = [
            str(ref) for ref in saved_pool.get("repositories", [pool.repository_ref])
        ]
        pool.synced_serial = int(saved_pool.get("synced_serial", pool.repository.serial))
        pool.last_update_sync = float(saved_pool.get("last_update_sync", pool.last_update_sync))
        versions.update_rolling_upgrade(pool)
        for host in pool.hosts.values():
            pool.emit(host)
        pool.emit(pool)


# ---- saving while the lab runs -----------------------------------------------------------


class Saver:
    """Saves the pool's state when it changed, at most once a second, and on `close`.

    A change is a new pool event (every change emits one). A fresh lab that never changed
    writes nothing: `rollup plan`'s throwaway lab leaves a paused run's state alone.
    """

    def __init__(self, pool: LabPool, path: Path, spec: Mapping[str, Any], restored: bool) -> None:
        self.pool = pool
        self.path = path
        self.spec = dict(spec)
        self._saved_token = pool.events.token
        self._dirty = restored  # a restored lab rewrites its file at least on stop
        self._lock = threading.Lock()  # one writer at a time: the thread or close()
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._run, name="lab-state", daemon=True)
        self._thread.start()

    def save_if_changed(self) -> bool:
        with self._lock:
            token = self.pool.events.token
            if token == self._saved_token and not self._dirty:
                return False
            save(self.path, capture(self.pool, self.spec))
            self._saved_token, self._dirty = token, False
            self._last = time.monotonic()
            return True

    def close(self) -> None:
        """Stop the thread and save a last time (call before the pool closes)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.save_if_changed()

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            if time.monotonic() - self._last < SAVE_INTERVAL:
                continue
            try:
                self.save_if_changed()
            except OSError as error:
                # Keep the lab running (the run matters more); try again a second later.
                self._last = time.monotonic()
                log.warning("lab state not saved to %s: %s", self.path, error)
