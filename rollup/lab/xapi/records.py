"""XenAPI records of the lab's objects, built the way xapi shows them on the wire.

Every record of a class has the same full field set (Xen Orchestra fixes a class's
fields from its first record). int64 fields are strings, as xapi sends them; times are
XML-RPC dateTimes; a task's `result` is an XML-RPC `<value>` fragment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from xmlrpc.client import DateTime

from rollup.lab import releases
from rollup.lab.xapi import wire
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import NULL, SimHost, SimNetwork, SimSR, SimTask, SimVM

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

API_VERSION = (2, 21)


def xapi_time(seconds: float) -> DateTime:
    return DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(seconds)))


def pool_record(pool: LabPool) -> dict[str, Any]:
    return {
        "uuid": pool.uuid,
        "name_label": pool.name,
        "name_description": "rollup lab pool",
        "master": pool.master,
        "default_SR": pool.shared_sr,
        "ha_enabled": pool.ha_enabled,
        "ha_configuration": {},
        "ha_host_failures_to_tolerate": "0",
        "ha_plan_exists_for": "0",
        "wlb_enabled": False,
        "other_config": dict(pool.other_config),
        "tags": [],
        "allowed_operations": [],
        "current_operations": dict(pool.pool_operations),
        "repositories": list(pool.update_repositories),
        # xapi's epoch where the pool never synced (XCP-ng pools do not).
        "last_update_sync": xapi_time(
            pool.last_update_sync if pool.layout.flavor == "xenserver" else 0.0
        ),
    }


def repository_record(pool: LabPool) -> dict[str, Any]:
    """XenServer's update repository (xen-api datamodel_repository.ml; its up_to_date
    field was removed in xapi 23.18.0): `hash` is the last sync's."""
    synced = pool.repository.as_of(pool.synced_serial)
    return {
        "uuid": pool.repository_uuid,
        "name_label": "base",
        "name_description": "the lab's update repository",
        "binary_url": "https://repo.rollup.invalid/base/8/x86_64/",
        "source_url": "https://repo.rollup.invalid/base/8/source/",
        "update": True,
        "hash": synced.hash() if pool.synced_serial else "",
        "gpgkey_path": "",
        "origin": "remote",
    }


def host_record(pool: LabPool, host: SimHost) -> dict[str, Any]:
    return {
        "uuid": host.uuid,
        "name_label": host.name,
        "name_description": "rollup lab host",
        "hostname": host.name,
        "address": host.address,
        "enabled": host.enabled,
        "metrics": host.metrics_ref,
        "resident_VMs": [vm.ref for vm in pool.resident_vms(host.ref)],
        "control_domain": host.dom0,
        "software_version": software_version(pool, host),
        "memory_overhead": str(host.memory_overhead),
        "other_config": dict(host.other_config),
        "last_software_update": xapi_time(host.last_software_update),
        "latest_synced_updates_applied": host.latest_synced_updates_applied,
        "last_update_hash": host.last_update_hash,
        "API_version_major": str(API_VERSION[0]),
        "API_version_minor": str(API_VERSION[1]),
        "API_version_vendor": "XenSource",
        "allowed_operations": ["evacuate", "reboot", "shutdown"] if host.live else [],
        "current_operations": {},
        "edition": "xcp-ng" if pool.layout.flavor == "xcp-ng" else "xenserver-premium",
        "local_cache_sr": NULL,
        "suspend_image_sr": host.local_sr,
        "crash_dump_sr": host.local_sr,
        "tags": [],
        **guidance_fields(host.guidances),
    }


def guidance_fields(guidances: dict[str, list[str]]) -> dict[str, list[str]]:
    """A host's or VM's pending update guidances, as xapi names the fields."""
    return {
        "pending_guidances": list(guidances["mandatory"]),
        "pending_guidances_recommended": list(guidances["recommended"]),
        "pending_guidances_full": list(guidances["full"]),
    }


def software_version(pool: LabPool, host: SimHost) -> dict[str, str]:
    return {
        "product_brand": releases.brand(pool.layout.flavor, host.version),
        "product_version": host.version,
        "product_version_text": host.version.rsplit(".", 1)[0],
        "product_version_text_short": host.version.rsplit(".", 1)[0],
        "platform_name": "XCP",
        "platform_version": host.platform_version,
        "build_number": releases.build_number(host.version),
        "xapi": host.xapi_version,
        "xapi_build": host.xapi_build,
        "xen": host.xen_version,
        "linux": "4.19.0+1",
        "hostname": host.name,
        "date": "2024-01-01",
    }


def host_metrics_record(pool: LabPool, host: SimHost) -> dict[str, Any]:
    return {
        "uuid": host.metrics_uuid,
        "memory_total": str(host.memory_total),
        "memory_free": str(pool.memory_free(host.ref)),
        "live": host.live,
        "last_updated": xapi_time(pool.now()),
        "other_config": {},
    }


def vm_record(pool: LabPool, vm: SimVM) -> dict[str, Any]:
    memory = str(vm.memory)
    return {
        "uuid": vm.uuid,
        "name_label": vm.name,
        "name_description": "",
        "power_state": vm.power_state,
        "resident_on": vm.resident_on,
        "affinity": vm.affinity,
        "is_a_template": False,
        "is_a_snapshot": False,
        "is_control_domain": vm.is_control_domain,
        "memory_static_max": memory,
        "memory_static_min": memory,
        "memory_dynamic_max": memory,
        "memory_dynamic_min": memory,
        "memory_target": memory if vm.power_state != "Halted" else "0",
        "memory_overhead": str(vm.memory_overhead),
        "VCPUs_max": "1" if vm.is_control_domain else str(max(1, vm.memory // 2**31)),
        "ha_restart_priority": vm.ha_priority,
        "order": "0",
        "start_delay": "0",
        "domid": str(vm.domid),
        "allowed_operations": allowed_vm_operations(vm),
        "current_operations": dict(vm.operations),
        "other_config": dict(vm.other_config),
        "tags": [],
        **guidance_fields(vm.guidances),
    }


def allowed_vm_operations(vm: SimVM) -> list[str]:
    if vm.is_control_domain or vm.operations:
        return []
    if vm.power_state == "Running":
        moves = [] if vm.pin else ["pool_migrate", "migrate_send"]
        return ["clean_shutdown", "hard_shutdown", *moves]
    if vm.power_state == "Halted":
        return ["start", "start_on"]
    return ["hard_shutdown"]


def sr_record(pool: LabPool, sr: SimSR) -> dict[str, Any]:
    return {
        "uuid": sr.uuid,
        "name_label": sr.name,
        "name_description": "",
        "type": sr.type,
        "shared": sr.shared,
        "content_type": "user",
        "physical_size": str(2**40),
        "physical_utilisation": str(2**38),
        "virtual_allocation": str(2**38),
        "other_config": {},
        "tags": [],
    }


def network_record(pool: LabPool, network: SimNetwork) -> dict[str, Any]:
    return {
        "uuid": network.uuid,
        "name_label": network.name,
        "name_description": "",
        "bridge": network.bridge,
        "MTU": "1500",
        "PIFs": [],
        "VIFs": [],
        "other_config": {},
        "tags": [],
    }


def task_record(pool: LabPool, task: SimTask) -> dict[str, Any]:
    return {
        "uuid": task.uuid,
        "name_label": task.name,
        "name_description": "",
        "allowed_operations": ["cancel"] if task.status == "pending" else [],
        "current_operations": {},
        "created": xapi_time(task.created),
        "finished": xapi_time(task.finished),
        "status": task.status,
        "resident_on": task.host,
        "progress": task.progress,
        "type": "<none/>",
        "result": task_result(task),
        "error_info": list(task.error_info),
        "other_config": {},
        "subtask_of": NULL,
        "subtasks": [],
        "backtrace": "()",
    }


def task_result(task: SimTask) -> str:
    """xapi gives a task's result as an XML-RPC `<value>` fragment, "" for none."""
    if task.status != "success" or task.result is None or task.result == "":
        return ""
    return wire.value(task.result)


def refs_of(pool: LabPool, cls: str) -> list[str]:
    """Every ref of a XenAPI class (the caller holds the pool's lock)."""
    by_class: dict[str, Callable[[], list[str]]] = {
        "pool": lambda: [pool.ref],
        "host": lambda: list(pool.hosts),
        "host_metrics": lambda: [h.metrics_ref for h in pool.hosts.values()],
        "VM": lambda: list(pool.vms),
        "SR": lambda: list(pool.srs),
        "network": lambda: list(pool.networks),
        "task": lambda: list(pool.tasks),
        "repository": lambda: [pool.repository_ref],
    }
    if cls not in by_class:
        raise KeyError(cls)
    return by_class[cls]()


def record_of(pool: LabPool, cls: str, ref: str) -> dict[str, Any]:
    """One object's record, as xapi gives it (the caller holds the pool's lock)."""
    if cls == "pool" and ref == pool.ref:
        return pool_record(pool)
    if cls == "host" and ref in pool.hosts:
        return host_record(pool, pool.hosts[ref])
    if cls == "host_metrics":
        for host in pool.hosts.values():
            if host.metrics_ref == ref:
                return host_metrics_record(pool, host)
    if cls == "VM" and ref in pool.vms:
        return vm_record(pool, pool.vms[ref])
    if cls == "SR" and ref in pool.srs:
        return sr_record(pool, pool.srs[ref])
    if cls == "network" and ref in pool.networks:
        return network_record(pool, pool.networks[ref])
    if cls == "task" and ref in pool.tasks:
        return task_record(pool, pool.tasks[ref])
    if cls == "repository" and ref == pool.repository_ref:
        return repository_record(pool)
    raise XapiFailure("HANDLE_INVALID", cls, ref)
