"""What a lab host has pending, and how a XenServer 8 pool syncs and installs it.

XCP-ng's updater plugin, which reads the lab's package repository as it is now, is
lab/xapi/updater.py. XenServer 8, as xen-api does it (ocaml/xapi/repository.ml,
xapi_pool.ml `get_updates_handler` and `sync_updates`, xapi_host.ml `apply_updates`,
xapi_pool_helpers.ml's pool operations):
- the pool has one update repository (`pool.repositories`; `pool.set_repositories`), a
  mirror that `pool.sync_updates` refreshes: it takes minutes and answers the new
  updateinfo hash. Until then the pool knows nothing of what was published;
- the master's GET /updates answers from the last sync: per host its pending RPMs,
  advisories and the guidance installing them demands, the advisories, and the hash.
  With no repository it answers HTTP 404 (NO_REPOSITORY_ENABLED), a bad `host_refs`
  HTTP 400. It is a waiting pool operation: it waits for an apply or a sync to end;
- `host.apply_updates(host, hash)` is a blocking pool operation: while another apply
  (or a sync) runs it fails at once, APPLY_UPDATES_IN_PROGRESS (SYNC_UPDATES_IN_PROGRESS).
  Then it refuses with HA on (HA_IS_ENABLED), DISABLES THE HOST, and only then checks:
  mandatory guidance already pending (HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY), no
  repository (NO_REPOSITORY_ENABLED), a hash other than the last sync's
  (UPDATEINFO_HASH_MISMATCH), VMs still on a host whose updates need a reboot
  (HOST_EVACUATION_IS_REQUIRED); each leaves the host disabled. It takes minutes, then
  records what must still happen as pending guidances, sets last_software_update,
  latest_synced_updates_applied and last_update_hash, and answers the livepatches that
  failed ([["APPLY_LIVEPATCH_FAILED", lp], ...]): only then is
  reboot_host_on_livepatch_failure added to the host's recommended guidance.
A guidance is cleared by its action: a reboot clears the host's, a toolstack restart
`restart_toolstack`, a VM's migration its `restart_device_model`, its restart
`restart_vm` (lab/xapi/guidances.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rollup.lab import packages, releases
from rollup.lab.packages import Build, Installed, Repository
from rollup.lab.xapi import fault_state, guidances
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimHost

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


def synced(pool: LabPool) -> Repository:
    """The pool's update repository as its last sync left it (NO_REPOSITORY_ENABLED
    without one)."""
    if not pool.update_repositories:
        raise XapiFailure("NO_REPOSITORY_ENABLED")
    pool.repository.reload()
    return pool.repository.as_of(pool.synced_serial)


def install(host: SimHost, builds: list[Build]) -> None:
    """Record `builds` as installed on the host's disk (what runs changes at its boot)."""
    installed = host.machine.packages() or {}
    now = time.time()
    for build in builds:
        installed[build.name] = Installed(build.version, build.release, now)
    host.machine.set_packages(installed)


# -- XenServer 8: /updates and host.apply_updates ------------------------------------------


def updates_json(pool: LabPool, host_refs: list[str] | None = None) -> dict[str, Any]:
    """What the master's GET /updates answers, for `host_refs` (None: every host)."""
    with pool.lock:
        # get_updates is a waiting pool operation: it waits for an apply or a sync.
        while pool.pool_operations and not pool.closed:
            pool.changed.wait(0.5)
        repository = synced(pool)
        hosts = []
        advisories: dict[str, list[Build]] = {}
        for host in pool.hosts.values():
            if host_refs is not None and host.ref not in host_refs:
                continue
            stream = packages.stream_of(host.version)
            installed = host.machine.packages() or {}
            builds = repository.pending(stream, installed) if host.live else []
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
            "hash": repository.hash(),
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


BLOCKING = {
    "apply_updates": "APPLY_UPDATES_IN_PROGRESS",
    "sync_updates": "SYNC_UPDATES_IN_PROGRESS",
}
SYNC_SECONDS = 60.0  # reading the remote repository's metadata, before its new packages
POOL_MIRROR_BANDWIDTH = 64 * 2**20  # a host fetching from the pool's own mirror (LAN)


@contextmanager
def pool_operation(pool: LabPool, operation: str) -> Iterator[None]:
    """A blocking pool operation: refused at once while another one runs."""
    key = f"OpaqueRef:{uuid.uuid4()}"
    with pool.lock:
        if pool.pool_operations:
            raise XapiFailure(BLOCKING[next(iter(pool.pool_operations.values()))])
        pool.pool_operations[key] = operation
        pool.emit_pool()
    try:
        yield
    finally:
        with pool.lock:
            del pool.pool_operations[key]
            pool.emit_pool()
            pool.changed.notify_all()


def spend(pool: LabPool, host: SimHost | None, seconds: float) -> None:
    """Let `seconds` of lab time pass while the pool goes on; a host that goes down
    meanwhile ends the call as xapi ends a call whose host vanished."""
    start = time.monotonic()
    real = pool.scheduler.real(seconds)
    with pool.lock:
        while True:
            if pool.closed or (host is not None and not host.live):
                raise XapiFailure("HOST_OFFLINE", host.ref if host else pool.master)
            done = time.monotonic() - start
            if done >= real:
                return
            pool.changed.wait(min(real - done, 0.5))


def sync_updates(pool: LabPool) -> str:
    """pool.sync_updates: the mirror fetches what was published since the last sync."""
    with pool_operation(pool, "sync_updates"):
        with pool.lock:
            if not pool.update_repositories:
                raise XapiFailure("NO_REPOSITORY_ENABLED")
            pool.repository.reload()
            target = pool.repository.serial
            fetched = pool.repository.added_since(pool.synced_serial)
        spend(pool, None, SYNC_SECONDS + packages.download_seconds(fetched, set()))
        with pool.lock:
            pool.synced_serial = max(pool.synced_serial, target)
            pool.last_update_sync = pool.now()
            pool.emit_pool()
            return synced(pool).hash()


def apply_updates(pool: LabPool, host_ref: str, hash_: str) -> list[list[str]]:
    with pool.lock:
        host = pool.host(host_ref)
        if not releases.has_update_api(pool.layout.flavor, host.version):
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", "host.apply_updates")
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if fault_state.take_apply_failure(pool, host):
            raise XapiFailure("APPLY_UPDATES_IN_PROGRESS")
    with pool_operation(pool, "apply_updates"):
        with pool.lock:
            if pool.ha_enabled:
                raise XapiFailure("HA_IS_ENABLED")
            if host.enabled:
                # xapi_host.ml: `disable ~auto_enable:true` before any other check, so
                # each refusal below leaves the host disabled.
                host.enabled = False
                pool.emit(host)
            if host.guidances["mandatory"]:
                raise XapiFailure("HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY", host.ref)
            repository = synced(pool)
            if not hash_ or hash_ != repository.hash():
                raise XapiFailure("UPDATEINFO_HASH_MISMATCH")
            stream = packages.stream_of(host.version)
            builds = repository.pending(stream, host.machine.packages() or {})
            if not builds:
                _applied(pool, host, hash_)
                return []
            guidance = packages.guidance(builds)
            running = [vm for vm in pool.resident_vms(host.ref) if not vm.is_control_domain]
            if "reboot_host" in guidance["mandatory"] and running:
                raise XapiFailure("HOST_EVACUATION_IS_REQUIRED", host.ref)
            if host.machine.patch_fault():
                raise XapiFailure("APPLY_UPDATES_FAILED", host.ref)
            fail_livepatch = pool.faults.for_host(host.name, host.uuid).fail_livepatch
        size = sum(build.size for build in builds)
        spend(pool, host, size / POOL_MIRROR_BANDWIDTH + packages.install_seconds(len(builds)))
        with pool.lock:
            install(host, builds)
            failed = [build for build in builds if build.livepatch and fail_livepatch]
            _set_guidances(pool, host, guidance, running, bool(failed))
            _applied(pool, host, hash_)
            return [["APPLY_LIVEPATCH_FAILED", _livepatch_name(build)] for build in failed]


def _set_guidances(
    pool: LabPool, host: SimHost, guidance: dict[str, list[str]], running: list[Any], failed: bool
) -> None:
    host_only = ("restart_device_model", "restart_vm")
    mandatory = [g for g in guidance["mandatory"] if g not in host_only]
    # A livepatch's failure guidance is added only when one failed (repository_helpers.ml
    # update_livepatch_failure_guidance), to the recommended list.
    recommended = [packages.LIVEPATCH_FAILURE] if failed else []
    guidances.add(host.guidances["mandatory"], mandatory)
    guidances.add(host.guidances["recommended"], recommended)
    guidances.add(host.guidances["full"], [*mandatory, *recommended])
    if "restart_device_model" in guidance["full"]:
        for vm in running:
            guidances.add_to_vm(pool, vm, "restart_device_model")
    if "restart_vm" in guidance["full"]:
        # xapi: once any host needs it, every running guest of the pool does.
        for vm in pool.vms.values():
            if not vm.is_control_domain and vm.power_state in ("Running", "Paused"):
                guidances.add_to_vm(pool, vm, "restart_vm")


def _applied(pool: LabPool, host: SimHost, hash_: str) -> None:
    host.last_software_update = pool.now()
    host.latest_synced_updates_applied = "yes"
    host.last_update_hash = hash_
    pool.emit(host)


def _livepatch_name(build: Build) -> str:
    return f"{build.kind} livepatch {build.name}-{build.version}-{build.release}"
