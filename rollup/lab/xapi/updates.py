"""What a lab host has pending, and how a XenServer 8 pool installs it.

XCP-ng's updater plugin, which reads the same pending list, is lab/xapi/updater.py.

XenServer 8, as xapi does:
- the master serves GET /updates (lab/xapi/server.py): per host its pending RPMs,
  advisories and the guidance installing them demands, the advisories, and a hash that
  changes with every publish;
- `host.apply_updates(host, hash)` installs one host's updates and records what must
  still happen as its pending guidances (and its running VMs'); it refuses with HA on
  (HA_IS_ENABLED), a stale hash (UPDATEINFO_HASH_MISMATCH), mandatory guidance already
  pending (HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY), VMs still on a host whose
  updates need a reboot (HOST_EVACUATION_IS_REQUIRED), and under the
  `apply_in_progress` fault (APPLY_UPDATES_IN_PROGRESS).
A guidance is cleared by its action: a reboot clears the host's, a toolstack restart
`restart_toolstack`, a VM's migration its `restart_device_model`, its restart
`restart_vm` (lab/xapi/guidances.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rollup.lab import packages, releases
from rollup.lab.packages import Build, Installed
from rollup.lab.xapi import fault_state, guidances
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import GUIDANCE_LEVELS, SimHost

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

# /updates names guidances in CamelCase, the API's fields in snake_case.
CAMEL = {
    "reboot_host": "RebootHost",
    "restart_toolstack": "RestartToolstack",
    "restart_device_model": "RestartDeviceModel",
    "restart_vm": "RestartVM",
    packages.LIVEPATCH_FAILURE: "RebootHostOnLivePatchFailure",
}


def pending(pool: LabPool, host: SimHost) -> list[Build]:
    pool.repository.reload()
    stream = packages.stream_of(host.version)
    return pool.repository.pending(stream, host.machine.packages() or {})


def install(host: SimHost, builds: list[Build]) -> None:
    """Record `builds` as installed on the host's disk (what runs changes at its boot)."""
    installed = host.machine.packages() or {}
    now = time.time()
    for build in builds:
        installed[build.name] = Installed(build.version, build.release, now)
    host.machine.set_packages(installed)


# -- XenServer 8: /updates and host.apply_updates ------------------------------------------


def updates_json(pool: LabPool) -> dict[str, Any]:
    """What the master's GET /updates answers."""
    with pool.lock:
        hosts = []
        advisories: dict[str, list[Build]] = {}
        for host in pool.hosts.values():
            builds = pending(pool, host) if host.live else []
            for build in builds:
                advisories.setdefault(build.advisory or "base", []).append(build)
            guidance = packages.guidance(builds)
            hosts.append(
                {
                    "ref": host.ref,
                    "guidance": {level: _camel(names) for level, names in guidance.items()},
                    "RPMS": [build.rpm for build in builds],
                    "updates": sorted({build.advisory for build in builds if build.advisory}),
                    "livepatches": [_livepatch(build) for build in builds if build.livepatch],
                }
            )
        return {
            "hosts": hosts,
            "updates": [_advisory(aid, builds) for aid, builds in sorted(advisories.items())],
            "hash": pool.repository.hash(),
        }


def _camel(names: list[str]) -> list[str]:
    return [CAMEL.get(name, name) for name in names]


def _livepatch(build: Build) -> dict[str, str]:
    return {
        "component": build.kind,
        "base_build_id": f"{build.name}-base",
        "base_version": build.version,
        "base_release": "1",
        "to_version": build.version,
        "to_release": build.release,
    }


def _advisory(advisory: str, builds: list[Build]) -> dict[str, Any]:
    guidance = packages.guidance(builds)
    return {
        "id": advisory,
        "summary": "; ".join(dict.fromkeys(b.summary for b in builds)),
        "description": ", ".join(b.nvr for b in builds),
        "special-info": "",
        "URL": "None",
        "type": "security" if any(b.severity == "High" for b in builds) else "bugfix",
        "issued": time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(0)),
        "severity": "High" if any(b.severity == "High" for b in builds) else "None",
        "livepatches": [_livepatch(b) for b in builds if b.livepatch],
        "guidance": {level: _camel(names) for level, names in guidance.items()},
        "title": advisory,
    }


def apply_updates(pool: LabPool, host_ref: str, hash_: str) -> list[list[str]]:
    with pool.lock:
        host = pool.host(host_ref)
        if not releases.has_update_api(pool.layout.flavor, host.version):
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", "host.apply_updates")
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if pool.ha_enabled:
            raise XapiFailure("HA_IS_ENABLED")
        if host.guidances["mandatory"]:
            raise XapiFailure("HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY", host.ref)
        if fault_state.take_apply_failure(pool, host):
            raise XapiFailure("APPLY_UPDATES_IN_PROGRESS")
        pool.repository.reload()
        if not hash_ or hash_ != pool.repository.hash():
            raise XapiFailure("UPDATEINFO_HASH_MISMATCH")
        builds = pending(pool, host)
        if not builds:
            return []
        guidance = packages.guidance(builds)
        running = [vm for vm in pool.resident_vms(host.ref) if not vm.is_control_domain]
        if "reboot_host" in guidance["mandatory"] and running:
            raise XapiFailure("HOST_EVACUATION_IS_REQUIRED", host.ref)
        if not host.machine.take_yum_lock():
            raise XapiFailure("APPLY_UPDATES_FAILED", host.ref)
        install(host, builds)
        for level in GUIDANCE_LEVELS:
            host_level = [
                g for g in guidance[level] if g not in ("restart_device_model", "restart_vm")
            ]
            guidances.add(host.guidances[level], host_level)
        if "restart_device_model" in guidance["full"]:
            for vm in running:
                guidances.add_to_vm(pool, vm, "restart_device_model")
        if "restart_vm" in guidance["full"]:
            # xapi: once any host needs it, every running guest of the pool does.
            for vm in pool.vms.values():
                if not vm.is_control_domain and vm.power_state in ("Running", "Paused"):
                    guidances.add_to_vm(pool, vm, "restart_vm")
        pool.emit(host)
        return []
