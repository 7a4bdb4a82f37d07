"""The lab as an admin's script sees it: `rollup lab up` driven by the official XenAPI client.

No rollup code runs in this process: the lab is the real CLI in a child process, its
inventory is read as a file, the pool is driven with `XenAPI` only and the hosts are
patched over SSH with paramiko, exactly as a person would upgrade a real pool by hand
(XAPI.md: master first; per host wait live, assert_can_evacuate, disable, evacuate,
patch, reboot, wait, enable, restart the VMs that could not move).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import signal
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
import XenAPI
import yaml

from tests import loopback
from tests.installed import ROLLUP

NETWORK = loopback.network(60)
TARGET = "8.3.0"
UNMOVABLE = {"VM_REQUIRES_SR", "VM_HAS_PCI_ATTACHED", "VM_HAS_VGPU", "VM_HAS_SRIOV_VIF"}
# What a client sees while the master's API is down or going down.
API_DOWN = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)
ORIGINATOR = "rollup-tests-by-hand"


@dataclass
class LabProcess:
    process: subprocess.Popen[str]
    dir: Path
    banner: list[str]
    inventory: dict[str, Any]

    @property
    def group(self) -> dict[str, Any]:
        return next(iter(self.inventory["all"]["children"].values()))


def _start_lab(tmp_path: Path) -> LabProcess:
    lab_dir = tmp_path / "lab"
    process = subprocess.Popen(
        [ROLLUP, "lab", "up", "--hosts", "4", "--vms", "24", "--ssh",
         "--speed", "100", "--dir", str(lab_dir), "--network", NETWORK, "--release", "8.2.1"],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "lab.stderr").open("w"),
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or ():
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + 30
    while not banner or banner[-1] != "Ctrl-C stops the lab.":
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            stderr = (tmp_path / "lab.stderr").read_text()
            pytest.fail(f"`rollup lab up` gave no banner: {banner}\n{stderr}")
        banner.append(line)
    inventory_path = lab_dir / "inventory.yml"
    assert inventory_path.exists()
    assert inventory_path.stat().st_mode & 0o077 == 0, "the inventory holds the password"
    inventory = yaml.safe_load(inventory_path.read_text())
    return LabProcess(process, lab_dir, banner, inventory)


def _stop_lab(lab: LabProcess) -> int:
    lab.process.send_signal(signal.SIGTERM)
    try:
        return lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        lab.process.kill()
        lab.process.wait()
        raise


def _processes_using(path: Path) -> list[str]:
    """Live processes whose command line or environment mentions `path`."""
    needle = str(path).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


# ---- the admin's side: XenAPI only ---------------------------------------------------------


@dataclass
class Admin:
    """A XenAPI session that reconnects while the master's API is down, as XenCenter does."""

    url: str
    user: str
    password: str
    session: XenAPI.Session | None = None
    api_errors: list[str] = field(default_factory=list)

    @property
    def x(self) -> Any:
        if self.session is None:
            session = XenAPI.Session(self.url)
            session.xenapi.login_with_password(self.user, self.password, "2.21", ORIGINATOR)
            self.session = session
        return self.session.xenapi

    def retrying(self, call: Callable[[Any], Any], timeout: float = 30) -> Any:
        """`call(x)`, logging in again until the API answers (XenCenter retries every 5 s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return call(self.x)
            except API_DOWN as error:
                self.api_errors.append(type(error).__name__)
                self.session = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the lab's time runs 100 times faster

    def wait(self, classes: list[str], done: Callable[[Any], bool], timeout: float = 30) -> None:
        """Block on event.from until `done(x)`, through API drops."""
        deadline = time.monotonic() + timeout
        token = ""
        while not self.retrying(done):
            assert time.monotonic() < deadline, "the pool did not reach the state in time"
            try:
                # The first call (token "") only fetches a token; later ones block.
                token = event_from(self.x, classes, token, 1.0 if token else 0.0)["token"]
            except API_DOWN as error:
                self.api_errors.append(type(error).__name__)
                self.session, token = None, ""
                time.sleep(0.05)
            except XenAPI.Failure as failure:
                if failure.details[0] != "EVENTS_LOST":
                    raise
                token = ""

    def logout(self) -> None:
        if self.session is not None:
            with contextlib.suppress(*API_DOWN, XenAPI.Failure):
                self.session.xenapi.session.logout()
            self.session = None


def failure_of(call: Callable[[], object]) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call()
    return info.value.details


def event_from(x: Any, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    # `from` is a Python keyword: x.event.from cannot be written, getattr reaches it.
    return getattr(x.event, "from")(classes, token, timeout)


# ---- SSH, as `ssh root@host` would -----------------------------------------------------------


@contextlib.contextmanager
def ssh_to(host_vars: dict[str, Any]) -> Iterator[paramiko.SSHClient]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # lab only: keys are new
    client.connect(
        host_vars["ansible_host"],
        port=int(host_vars.get("ansible_port", 22)),
        username=host_vars["ansible_user"],
        key_filename=host_vars["ansible_ssh_private_key_file"],
        timeout=15, banner_timeout=15, auth_timeout=15, look_for_keys=False, allow_agent=False,
    )  # fmt: skip
    try:
        yield client
    finally:
        client.close()


def run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    output = stdout.read().decode()
    status = stdout.channel.recv_exit_status()
    assert status == 0, f"{command!r} exited {status}: {stderr.read().decode()}"
    return output


PATCH = (
    'set -eu; state="$ROLLUP_LAB_ROOT/etc/rollup-lab"; '
    "printf '%s\\n' {version} > \"$state/installed-version.partial\"; "
    'mv "$state/installed-version.partial" "$state/installed-version"; '
    'hostname; cat "$state/running-version"'
)


# ---- the test --------------------------------------------------------------------------------


def test_a_rolling_upgrade_by_hand_with_xenapi_and_ssh(tmp_path: Path) -> None:
    lab = _start_lab(tmp_path)
    admin: Admin | None = None
    try:
        assert any("XenAPI" in line for line in lab.banner)
        group = lab.group
        api = group["vars"]
        admin = Admin(api["rollup_api_url"], api["rollup_api_user"], api["rollup_api_password"])
        _upgrade_by_hand(admin, group["hosts"])
    finally:
        if admin is not None:
            admin.logout()
        code = _stop_lab(lab)
    assert code == 0, (tmp_path / "lab.stderr").read_text()
    assert _processes_using(lab.dir) == []


def _upgrade_by_hand(admin: Admin, inventory_hosts: dict[str, Any]) -> None:
    x = admin.x
    pool_ref = x.pool.get_all()[0]
    master = x.pool.get_master(pool_ref)
    hosts = x.host.get_all_records()
    guests = x.VM.get_all_records_where('field "is_control_domain" = "false"')
    running = {
        ref: vm["resident_on"] for ref, vm in guests.items() if vm["power_state"] == "Running"
    }
    assert len(hosts) == 4 and len(guests) == 24 and len(running) > 12
    assert {h["name_label"] for h in hosts.values()} == set(inventory_hosts)
    for host in hosts.values():
        assert host["address"] == inventory_hosts[host["name_label"]]["ansible_host"]
        assert host["software_version"]["product_version"] != TARGET
    assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(pool_ref)

    # A member's address answers HOST_IS_SLAVE with the master's address.
    port = admin.url.rsplit(":", 1)[1]
    member = next(ref for ref in hosts if ref != master)
    member_session = XenAPI.Session(f"http://{hosts[member]['address']}:{port}")
    details = failure_of(
        lambda: member_session.xenapi.login_with_password(
            admin.user, admin.password, "2.21", ORIGINATOR
        )
    )
    assert details == ["HOST_IS_SLAVE", hosts[master]["address"]]
    # Rebooting an enabled host is refused.
    assert failure_of(lambda: x.host.reboot(master)) == ["HOST_NOT_DISABLED"]

    members = sorted((r for r in hosts if r != master), key=lambda r: hosts[r]["name_label"])
    order = [master, *members]
    restarted: list[str] = []
    for index, host in enumerate(order):
        name = hosts[host]["name_label"]
        restarted += _upgrade_host(admin, host, inventory_hosts[name], running)
        if index == 0:
            _check_rolling_upgrade_mode(admin, pool_ref, master, hosts, running)
        if host == master:
            assert "ConnectionRefusedError" in admin.api_errors, admin.api_errors

    assert restarted, "the lab has VMs that cannot move: some were stopped and restarted"
    x = admin.x
    for host in x.host.get_all_records().values():
        assert host["software_version"]["product_version"] == TARGET, host["name_label"]
        assert host["enabled"], host["name_label"]
        assert x.host_metrics.get_live(host["metrics"])
    for ref, home in running.items():
        assert x.VM.get_power_state(ref) == "Running", guests[ref]["name_label"]
        assert x.VM.get_resident_on(ref) == home, guests[ref]["name_label"]
    assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(pool_ref)
    assert [t for t in x.task.get_all_records().values() if t["status"] == "pending"] == []


def _upgrade_host(
    admin: Admin, host: str, host_vars: dict[str, Any], homes: dict[str, str]
) -> list[str]:
    """One host, by hand; returns the VMs it had to stop and start again."""
    x = admin.x
    name = x.host.get_name_label(host)
    admin.wait(
        ["host", "host_metrics"], lambda x: x.host_metrics.get_live(x.host.get_metrics(host))
    )

    # VMs that cannot move (local disk, PCI...): shut down now, start again afterwards.
    blockers = x.host.get_vms_which_prevent_evacuation(host)
    pinned = list(blockers)
    for vm, error in blockers.items():
        assert error[0] in UNMOVABLE, f"{x.VM.get_name_label(vm)} blocks evacuation: {error}"
    if blockers:
        details = failure_of(lambda: x.host.assert_can_evacuate(host))
        assert details[0] == "CANNOT_EVACUATE_HOST" and len(details) == 2
        assert set(details[1].split("|")) == {",".join(e) for e in blockers.values()}
    for vm in pinned:
        x.VM.clean_shutdown(vm)
        assert x.VM.get_power_state(vm) == "Halted"
    x.host.assert_can_evacuate(host)

    x.host.disable(host)
    x.host.disable(host)  # a no-op when already disabled
    assert not x.host.get_enabled(host)
    _evacuate(admin, host)
    resident = [vm for vm in x.host.get_resident_VMs(host) if not x.VM.get_is_control_domain(vm)]
    assert resident == [], f"{name} still runs {resident}"

    with ssh_to(host_vars) as ssh:
        hostname, running_version = run(ssh, PATCH.format(version=TARGET)).split()
    assert hostname == name
    assert running_version == x.host.get_software_version(host)["product_version"]

    before = x.host.get_other_config(host)
    boot_time, agent_start = float(before["boot_time"]), float(before["agent_start_time"])
    x.host.reboot(host)

    def back(x: Any) -> bool:
        record = x.host.get_record(host)
        config = record["other_config"]
        return (
            x.host_metrics.get_live(record["metrics"])
            and record["enabled"]
            and float(config.get("agent_start_time", 0)) > agent_start
        )

    admin.wait(["host", "host_metrics"], back)
    x = admin.x
    config = x.host.get_other_config(host)
    assert float(config["boot_time"]) > boot_time, "a reboot gives a newer boot_time"
    assert x.host.get_software_version(host)["product_version"] == TARGET
    x.host.enable(host)  # xapi enabled it on start-up: a no-op
    assert x.host.get_enabled(host)
    with ssh_to(host_vars) as ssh:
        assert run(ssh, 'cat "$ROLLUP_LAB_ROOT/etc/rollup-lab/running-version"').strip() == TARGET

    for vm in pinned:
        x.VM.start_on(vm, host, False, False)
        assert x.VM.get_resident_on(vm) == host
    # Bring the host's own VMs home (older → newer is allowed during the upgrade).
    for vm, home in homes.items():
        if home == host and vm not in pinned and x.VM.get_resident_on(vm) != host:
            x.VM.pool_migrate(vm, host, {"live": "true"})
    assert {vm for vm, home in homes.items() if home == host} <= set(x.host.get_resident_VMs(host))
    return pinned


def _evacuate(admin: Admin, host: str) -> None:
    """Async.host.evacuate, its task followed with event.from until it ends."""
    x = admin.x
    task = x.Async.host.evacuate(host)
    progress: list[float] = []
    token = event_from(x, ["task"], "", 0.0)["token"]
    record = x.task.get_record(task)
    deadline = time.monotonic() + 30
    while record["status"] == "pending":
        assert time.monotonic() < deadline, "evacuation did not finish"
        result = event_from(x, ["task"], token, 5.0)
        token = result["token"]
        for event in result["events"]:
            if event["ref"] == task and event["operation"] != "del":
                record = event["snapshot"]
                progress.append(float(record["progress"]))
    assert record["status"] == "success", record["error_info"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    x.task.destroy(task)
    assert failure_of(lambda: x.task.get_record(task))[0] == "HANDLE_INVALID"


def _check_rolling_upgrade_mode(
    admin: Admin, pool_ref: str, master: str, hosts: dict[str, Any], homes: dict[str, str]
) -> None:
    """Master newer, members older: the pool is in rolling-upgrade mode."""
    x = admin.x
    assert x.pool.get_other_config(pool_ref).get("rolling_upgrade_in_progress")
    older = next(ref for ref in hosts if ref != master)
    vm = next(
        vm
        for vm, home in homes.items()
        if x.VM.get_resident_on(vm) == older and "pool_migrate" in x.VM.get_allowed_operations(vm)
    )
    x.VM.pool_migrate(vm, master, {"live": "true"})  # older → newer: allowed
    assert x.VM.get_resident_on(vm) == master
    details = failure_of(lambda: x.VM.pool_migrate(vm, older, {"live": "true"}))
    assert details == ["NOT_SUPPORTED_DURING_UPGRADE"]
    assert x.VM.get_resident_on(vm) == master
