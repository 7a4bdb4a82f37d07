"""The PVE API calls the lab answers, over its simulated pool.

`Cluster.call(method, path, params, headers, local)` is one request to node `local`'s
API: it checks who calls (auth.py), finds the route and answers its data, or raises
PveFailure as pveproxy would answer (the status and reason a client sees). A request
about another node that is down fails with 595, as pveproxy's proxying does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rollup.lab.packages import stream_of
from rollup.lab.proxmox import guests, resources
from rollup.lab.proxmox.auth import Auth
from rollup.lab.proxmox.crm import Crm
from rollup.lab.proxmox.failure import PveFailure
from rollup.lab.proxmox.resources import Ids, node
from rollup.lab.proxmox.tasks import Log, Tasks
from rollup.lab.xapi import lifecycle
from rollup.lab.xapi.objects import SimHost, SimVM
from rollup.lab.xapi.pool import LabPool

Params = Mapping[str, str]
Route = Callable[["Cluster", "Request"], Any]
CEPH_FLAGS = ("noout", "noin", "norebalance", "norecover", "noscrub", "nodeep-scrub", "pause")
CEPH_KEY = "lab:ceph_flags"  # pool.other_config: the cluster's Ceph flags, kept with its state


class Request:
    def __init__(
        self, method: str, match: re.Match[str], params: Params, user: str, local: str
    ) -> None:
        self.method = method
        self.match = match
        self.params = params
        self.user = user
        self.local = local  # the ref of the node that answers

    def __getitem__(self, name: str) -> str:
        return self.match[name]


class Cluster:
    def __init__(self, pool: LabPool, pmxcfs: Path, auth: Auth) -> None:
        self.pool = pool
        self.auth = auth
        self.ids = Ids(pool)
        self.tasks = Tasks()
        self.crm = Crm(pool, pmxcfs)

    def call(
        self, method: str, path: str, params: Params, headers: Mapping[str, str], local: str
    ) -> Any:
        path = path.rstrip("/")
        if method == "POST" and path == "/access/ticket":
            return self.auth.login(params)
        user = self.auth.check(method, headers)
        for verb, pattern, route in ROUTES:
            match = pattern.fullmatch(path)
            if match and verb == method:
                if "node" in pattern.groupindex:
                    self._reachable(match["node"])
                return route(self, Request(method, match, params, user, local))
        raise PveFailure(501, f"Method '{method} /api2/json{path}' not implemented")

    def _reachable(self, name: str) -> None:
        with self.pool.lock:
            if not resources.online(node(self.pool, name)):
                raise PveFailure(595, f"Connection refused: node {name} is offline")

    def vm(self, request: Request) -> SimVM:
        return resources.vm_on(self.pool, self.ids, request["node"], request["vmid"])

    def task(self, request: Request, kind: str, on: str, work: Callable[[Log], None]) -> str:
        return self.tasks.start(request["node"], kind, on, request.user, work)


def _version(cluster: Cluster, request: Request) -> Any:
    host = cluster.pool.hosts[request.local]
    return {"version": host.version, "release": stream_of(host.version), "repoid": "c1689ccb"}


def _cluster_status(cluster: Cluster, request: Request) -> Any:
    with cluster.pool.lock:
        return resources.cluster_status(cluster.pool, request.local)


def _cluster_resources(cluster: Cluster, request: Request) -> Any:
    wanted = request.params.get("type", "")
    if wanted not in ("", "vm", "node", "storage", "sdn"):
        raise PveFailure(400, "Parameter verification failed.", {"type": "value not allowed"})
    pool, found = cluster.pool, []
    with pool.lock:
        if wanted in ("", "node"):
            found += [resources.node_entry(pool, h) for h in pool.hosts.values()]
        if wanted in ("", "vm"):
            found += [resources.vm_entry(pool, cluster.ids, pool.vms[r]) for r in cluster.ids.vmids]
        if wanted in ("", "storage"):
            found += resources.storage_entries(pool)
    return found


def _ha_status(cluster: Cluster, request: Request) -> Any:
    pool = cluster.pool
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    with pool.lock:
        local = pool.hosts[request.local].name
        found: list[dict[str, Any]] = [
            {"id": "quorum", "type": "quorum", "node": local, "status": "OK", "quorate": 1},
            {
                "id": "master",
                "type": "master",
                "node": local,
                "status": f"{local} (active, {stamp})",
            },
        ]
        for host in pool.hosts.values():
            state = "maintenance mode" if cluster.crm.in_maintenance(host.name) else "idle"
            found.append(
                {
                    "id": f"lrm:{host.name}",
                    "type": "lrm",
                    "node": host.name,
                    "status": f"{host.name} ({state}, {stamp})"
                    if resources.online(host)
                    else "old timestamp - dead?",
                }
            )
    return found


def _manager_status(cluster: Cluster, request: Request) -> Any:
    """GET /cluster/ha/status/manager_status: the CRM's view, each node's mode in it."""
    pool = cluster.pool
    with pool.lock:
        nodes = {
            host.name: "maintenance"
            if cluster.crm.in_maintenance(host.name)
            else "online"
            if resources.online(host)
            else "unknown"
            for host in pool.hosts.values()
        }
        master = pool.hosts[request.local].name
    return {
        "manager_status": {
            "master_node": master,
            "node_status": nodes,
            "service_status": {},
            "timestamp": int(time.time()),
        },
        "quorum": {"node": master, "quorate": "1"},
    }


def _ceph_flags(cluster: Cluster, request: Request) -> Any:
    flags = _flags_set(cluster.pool)
    return [{"name": f, "value": int(f in flags), "description": f"lab: {f}"} for f in CEPH_FLAGS]


def _ceph_flag(cluster: Cluster, request: Request) -> Any:
    flag = request["flag"]
    if flag not in CEPH_FLAGS:
        raise PveFailure(400, "Parameter verification failed.", {"flag": "value not allowed"})
    if request.method == "GET":
        return int(flag in _flags_set(cluster.pool))
    value = request.params.get("value", "")
    if value not in ("0", "1"):
        raise PveFailure(
            400, "Parameter verification failed.", {"value": "type check ('boolean') failed"}
        )
    with cluster.pool.lock:
        flags = _flags_set(cluster.pool)
        flags = flags | {flag} if value == "1" else flags - {flag}
        cluster.pool.other_config[CEPH_KEY] = ",".join(sorted(flags))
        cluster.pool.emit(cluster.pool)
    return None


def _flags_set(pool: LabPool) -> set[str]:
    with pool.lock:
        return {f for f in pool.other_config.get(CEPH_KEY, "").split(",") if f}


def _nodes(cluster: Cluster, request: Request) -> Any:
    with cluster.pool.lock:
        return [resources.node_entry(cluster.pool, h) for h in cluster.pool.hosts.values()]


def _node_status(cluster: Cluster, request: Request) -> Any:
    pool = cluster.pool
    with pool.lock:
        host = node(pool, request["node"])
        if request.method == "GET":
            return resources.node_status(pool, host)
        command = request.params.get("command", "")
        if command not in ("reboot", "shutdown"):
            raise PveFailure(
                400, "Parameter verification failed.", {"command": "value not allowed"}
            )
        if command == "shutdown":
            raise PveFailure(501, "the lab's nodes do not shut down: reboot them")
        _reboot(pool, host)
    return None


def _reboot(pool: LabPool, host: SimHost) -> None:
    if host.phase != "up":
        raise PveFailure(500, f"node {host.name} is already going down")
    # A node goes down whatever runs on it: its guests stop with it.
    host.enabled = False
    lifecycle.reboot(pool, host.ref)


def _apt_updates(cluster: Cluster, request: Request) -> Any:
    pool = cluster.pool
    with pool.lock:
        host = node(pool, request["node"])
        repository, installed = pool.repository, host.machine.packages() or {}
        stream = stream_of(host.version)
    if request.method == "POST":
        return cluster.task(request, "aptupdate", "", lambda add: add("reading package lists"))
    repository.reload()
    found = []
    for build in repository.pending(stream, installed):
        have = installed.get(build.name)
        found.append(
            {
                "Package": build.name,
                "Title": build.summary,
                "Description": build.summary,
                "OldVersion": f"{have.version}-{have.release}" if have else "",
                "Version": f"{build.version}-{build.release}",
                "Origin": "Proxmox",
                "Priority": "important" if build.severity == "High" else "optional",
                "Section": "admin",
                "Arch": "amd64",
            }
        )
    return found


def _qemu(cluster: Cluster, request: Request) -> Any:
    pool = cluster.pool
    with pool.lock:
        return [
            resources.vm_entry(pool, cluster.ids, pool.vms[ref])
            for ref in cluster.ids.vmids
            if resources.home(pool, pool.vms[ref]).name == request["node"]
        ]


def _vm_status(cluster: Cluster, request: Request) -> Any:
    with cluster.pool.lock:
        return resources.vm_entry(cluster.pool, cluster.ids, cluster.vm(request))


def _task_status(cluster: Cluster, request: Request) -> Any:
    return cluster.tasks.find(request["node"], request["upid"]).status()


def _task_log(cluster: Cluster, request: Request) -> Any:
    task = cluster.tasks.find(request["node"], request["upid"])
    start = int(request.params.get("start", "0") or 0)
    limit = int(request.params.get("limit", "50") or 50)
    return cluster.tasks.log_of(task, start, limit)


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("{", "(?P<").replace("}", ">[^/]+)"))


ROUTES: tuple[tuple[str, re.Pattern[str], Route], ...] = (
    ("GET", _route("/version"), _version),
    ("GET", _route("/cluster/status"), _cluster_status),
    ("GET", _route("/cluster/resources"), _cluster_resources),
    ("GET", _route("/cluster/ha/status/current"), _ha_status),
    ("GET", _route("/cluster/ha/status/manager_status"), _manager_status),
    ("GET", _route("/cluster/ha/resources"), lambda cluster, request: []),
    ("GET", _route("/cluster/ceph/flags"), _ceph_flags),
    ("GET", _route("/cluster/ceph/flags/{flag}"), _ceph_flag),
    ("PUT", _route("/cluster/ceph/flags/{flag}"), _ceph_flag),
    ("GET", _route("/nodes"), _nodes),
    ("GET", _route("/nodes/{node}/status"), _node_status),
    ("POST", _route("/nodes/{node}/status"), _node_status),
    ("GET", _route("/nodes/{node}/apt/update"), _apt_updates),
    ("POST", _route("/nodes/{node}/apt/update"), _apt_updates),
    ("GET", _route("/nodes/{node}/qemu"), _qemu),
    ("GET", _route("/nodes/{node}/lxc"), lambda cluster, request: []),  # no containers here
    ("GET", _route("/nodes/{node}/qemu/{vmid}/status/current"), _vm_status),
    (
        "POST",
        re.compile(
            r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>[^/]+)/status/(?P<action>start|shutdown|stop|reboot)"
        ),
        guests.power,
    ),
    ("GET", _route("/nodes/{node}/qemu/{vmid}/migrate"), guests.migrate),
    ("POST", _route("/nodes/{node}/qemu/{vmid}/migrate"), guests.migrate),
    ("GET", _route("/nodes/{node}/tasks/{upid}/status"), _task_status),
    ("GET", _route("/nodes/{node}/tasks/{upid}/log"), _task_log),
)
