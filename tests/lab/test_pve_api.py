"""The lab's PVE API, checked with proxmoxer and plain HTTPS as a Proxmox user would.

No rollup code on the client side: tickets and their CSRF tokens, API tokens, the lab
CA's certificate, tasks with UPIDs and logs, the errors pveproxy answers, a node that is
down. The pool behind it is the simulated one (lab/xapi/pool.py), so a migration takes
its simulated time and memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proxmoxer
import pytest
import requests
from proxmoxer.core import AuthenticationError, ResourceException
from proxmoxer.tools import Tasks

from rollup.lab.proxmox.server import PveServer
from rollup.lab.xapi import lifecycle
from rollup.lab.xapi.pool import LabPool
from tests import loopback

PREFIX = loopback.prefix(27)
PASSWORD = "lab-password"


@dataclass
class Served:
    pool: LabPool
    server: PveServer

    def api(self, node: int = 1, **auth: Any) -> Any:
        credentials = auth or {"token_name": "rollup", "token_value": self.server.token}
        return proxmoxer.ProxmoxAPI(
            f"{PREFIX}{node}",
            port=self.server.port,
            user="root@pam",
            verify_ssl=str(self.server.ca),
            **credentials,
        )

    def url(self, path: str, node: int = 1) -> str:
        return f"https://{PREFIX}{node}:{self.server.port}/api2/json/{path}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    pool = LabPool.generate(hosts=3, vms=12, seed=1, speed=200, address_prefix=PREFIX)
    server = PveServer.for_lab(pool, tmp_path, 0, PASSWORD, fresh=True)
    server.start()
    try:
        yield Served(pool, server)
    finally:
        server.stop()
        pool.close()


def test_a_ticket_needs_its_csrf_token_for_anything_but_reading(served: Served) -> None:
    verify = str(served.server.ca)
    login = requests.post(
        served.url("access/ticket"),
        data={"username": "root@pam", "password": PASSWORD},
        verify=verify,
        timeout=10,
    )
    assert login.status_code == 200
    ticket = login.json()["data"]
    cookies = {"PVEAuthCookie": ticket["ticket"]}
    read = requests.get(served.url("nodes"), cookies=cookies, verify=verify, timeout=10)
    assert read.status_code == 200 and len(read.json()["data"]) == 3
    flag = served.url("cluster/ceph/flags/noout")
    refused = requests.put(flag, data={"value": 1}, cookies=cookies, verify=verify, timeout=10)
    assert refused.status_code == 401 and "csrf" in refused.reason
    headers = {"CSRFPreventionToken": ticket["CSRFPreventionToken"]}
    done = requests.put(
        flag, data={"value": 1}, cookies=cookies, headers=headers, verify=verify, timeout=10
    )
    assert done.status_code == 200, done.reason
    nobody = requests.get(served.url("nodes"), verify=verify, timeout=10)
    assert nobody.status_code == 401 and nobody.reason == "No ticket"


def test_proxmoxer_logs_in_with_a_password_or_a_token_and_is_refused_otherwise(
    served: Served,
) -> None:
    version = served.pool.host_named("h1").version
    assert served.api(password=PASSWORD).version.get()["version"] == version
    assert len(served.api(2).nodes.get()) == 3  # any node answers for the cluster
    with pytest.raises(AuthenticationError):
        served.api(password="wrong").version.get()
    with pytest.raises(ResourceException) as refused:
        served.api(token_name="rollup", token_value="wrong").version.get()
    assert refused.value.status_code == 401


def test_the_certificate_is_the_lab_cas_and_nothing_else_trusts_it(served: Served) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(served.url("version"), timeout=10)  # the system's CAs
    answer = requests.get(served.url("version", node=3), verify=str(served.server.ca), timeout=10)
    assert answer.status_code == 401  # TLS verified on every node's address


def test_a_live_migration_is_a_task_whose_log_says_how_it_went(served: Served) -> None:
    api = served.api()
    guests = api.cluster.resources.get(type="vm")
    vm = next(g for g in guests if g["status"] == "running" and g["name"] == "web-01")
    source = vm["node"]
    check = api.nodes(source).qemu(vm["vmid"]).migrate.get()
    assert check["local_disks"] == [] and check["local_resources"] == []
    target = next(n for n in check["allowed_nodes"] if _free(api, n) > vm["maxmem"])
    upid = api.nodes(source).qemu(vm["vmid"]).migrate.post(target=target, online=1)
    assert upid.startswith(f"UPID:{source}:") and ":qmigrate:" in upid
    status = Tasks.blocking_status(api, upid, timeout=60, polling_interval=0.05)
    assert status["exitstatus"] == "OK", status
    log = [entry["t"] for entry in api.nodes(source).tasks(upid).log.get()]
    assert log[0].startswith(f"starting migration of VM {vm['vmid']} to node '{target}'")
    assert log[-1] == "TASK OK"
    moved = {g["vmid"]: g["node"] for g in api.cluster.resources.get(type="vm")}
    assert moved[vm["vmid"]] == target
    # It is on the target now: the source no longer has its configuration.
    with pytest.raises(ResourceException) as gone:
        api.nodes(source).qemu(vm["vmid"]).status.current.get()
    assert "does not exist" in gone.value.content


def test_what_keeps_a_guest_on_its_node_is_refused_as_proxmox_refuses_it(served: Served) -> None:
    api = served.api()
    running = [vm for vm in served.pool.vms.values() if vm.power_state == "Running"]
    guests = [vm for vm in running if not vm.is_control_domain]
    # A guest with a PCI device passed through, another with a disk on local storage.
    guests[0].pin, guests[1].pin = "pci", "local-sr"
    by_name = {g["name"]: g for g in api.cluster.resources.get(type="vm")}
    vm = by_name[guests[0].name]
    other = next(n["node"] for n in api.nodes.get() if n["node"] != vm["node"])
    with pytest.raises(ResourceException) as refused:
        api.nodes(vm["node"]).qemu(vm["vmid"]).migrate.post(target=other, online=1)
    assert "can't migrate VM which uses local devices: hostpci" in refused.value.content
    disk = by_name[guests[1].name]
    check = api.nodes(disk["node"]).qemu(disk["vmid"]).migrate.get()
    assert check["local_disks"][0]["volid"].startswith("local-lvm:")
    other = next(n["node"] for n in api.nodes.get() if n["node"] != disk["node"])
    upid = api.nodes(disk["node"]).qemu(disk["vmid"]).migrate.post(target=other, online=1)
    status = Tasks.blocking_status(api, upid, timeout=60, polling_interval=0.05)
    assert "with-local-disks" in status["exitstatus"]
    with pytest.raises(ResourceException) as local:
        api.nodes(disk["node"]).qemu(disk["vmid"]).migrate.post(target=disk["node"], online=1)
    assert local.value.status_code == 400 and "target is local node" in str(local.value.errors)


def test_a_node_that_is_down_refuses_connections_and_the_others_say_so(served: Served) -> None:
    api = served.api()
    pool = served.pool
    pool.reboot_seconds = 1800.0  # 1/6 of it booting: 1.5 s at speed 200, time to look at it
    api.nodes("h3").status.post(command="reboot")  # its guests stop with it
    _wait(lambda: not pool.host_named("h3").live)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(served.url("version", node=3), verify=str(served.server.ca), timeout=5)
    with pytest.raises(ResourceException) as offline:
        api.nodes("h3").status.get()
    assert offline.value.status_code == 595
    assert {e["name"]: e["online"] for e in api.cluster.status.get() if e["type"] == "node"} == {
        "h1": 1,
        "h2": 1,
        "h3": 0,
    }
    # Booted but its services still starting: not online to the cluster yet, so nothing
    # is sent to it (a driver waiting for "online" waits for this to end).
    h3 = pool.host_named("h3")
    _wait(lambda: h3.live, timeout=30)
    assert h3.phase == "booting", "300 s of the lab's time: 1.5 s"
    assert _node_status(api) == {"h1": "online", "h2": "online", "h3": "offline"}
    with pytest.raises(ResourceException) as starting:
        api.nodes("h3").status.get()
    assert starting.value.status_code == 595
    _wait(lambda: _node_status(api)["h3"] == "online", timeout=30)
    assert h3.phase == "up" and api.nodes("h3").status.get()["uptime"] < 1800  # a new boot


def test_unknown_nodes_paths_and_parameters_answer_as_pveproxy_does(served: Served) -> None:
    api = served.api()
    with pytest.raises(ResourceException) as node:
        api.nodes("h9").status.get()
    assert "hostname lookup 'h9' failed" in node.value.content
    with pytest.raises(ResourceException) as path:
        api.nodes("h1").ceph.osd.get()
    assert path.value.status_code == 501
    with pytest.raises(ResourceException) as parameter:
        api.cluster.resources.get(type="volume")
    assert parameter.value.status_code == 400 and "type" in parameter.value.errors
    flags = {f["name"]: f["value"] for f in api.cluster.ceph.flags.get()}
    assert flags["noout"] == 0
    body = requests.get(served.url("nodes/h1/apt/update"), verify=str(served.server.ca), timeout=5)
    assert json.loads(body.text) == {"data": None}


def test_a_node_in_maintenance_is_disabled_until_the_command_that_ends_it(
    served: Served, tmp_path: Path
) -> None:
    commands = tmp_path / "pmxcfs/ha/crm_commands"
    commands.parent.mkdir(parents=True, exist_ok=True)
    commands.write_text("node-maintenance enable h2\n")
    api = served.api()
    _wait(lambda: _mode(api, "h2") == "maintenance")
    h2 = served.pool.host_named("h2")
    assert not h2.enabled
    lifecycle.reboot(served.pool, h2.ref)
    _wait(lambda: served.pool.host_named("h2").phase == "down" or not h2.live)
    _wait(lambda: h2.live and h2.phase == "up", timeout=30)
    time.sleep(0.2)
    assert _mode(api, "h2") == "maintenance" and not h2.enabled, "it survives a reboot"
    commands.write_text("node-maintenance disable h2\n")
    _wait(lambda: _mode(api, "h2") == "online" and h2.enabled)


def _mode(api: Any, node: str) -> str:
    """The node's mode as the HA manager keeps it: "online", "maintenance", ..."""
    return str(api.cluster.ha.status.manager_status.get()["manager_status"]["node_status"][node])


def _node_status(api: Any) -> dict[str, str]:
    return {n["node"]: n["status"] for n in api.cluster.resources.get(type="node")}


def _free(api: Any, node: str) -> int:
    entry = next(n for n in api.nodes.get() if n["node"] == node)
    return int(entry["maxmem"]) - int(entry["mem"])


def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)
