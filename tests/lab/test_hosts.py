"""Lab host machines with real sshd daemons on 127.S.30.100-149, reached with paramiko."""

from __future__ import annotations

import itertools
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from rollup.errors import BadInput, RemoteError
from rollup.lab import hosts, sshd
from rollup.lab.faults import HostFaults
from rollup.lab.hosts import LabMachine
from rollup.remote import ansible, processes, ssh
from tests import loopback
from tests.lab_hosts import lab_hosts

LAB_PATCH = Path(__file__).parents[2] / "playbooks" / "lab-patch.yml"
_addresses = (loopback.address(30, n) for n in itertools.cycle(range(100, 150)))


@pytest.fixture
def make_machine(tmp_path: Path) -> Iterator[Callable[..., LabMachine]]:
    yield from lab_hosts(tmp_path, _addresses)


@pytest.fixture
def machine(make_machine) -> LabMachine:
    return make_machine()


def alive(pids: set[int]) -> set[int]:
    """The pids still running (zombies waiting for a reaper count as gone)."""
    return {pid for pid in pids if processes.running(pid)}


def sshd_processes(machine: LabMachine) -> set[int]:
    return alive(processes.with_cmdline(str(machine.sshd_config)))


def test_a_lab_host_answers_ssh_with_its_own_name_and_disk(machine):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        machine.address,
        port=22,
        username="root",
        key_filename=str(machine.key),
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
    )
    try:
        _, stdout, _ = client.exec_command('hostname; echo "$ROLLUP_LAB_ROOT"')
        assert stdout.read().decode().splitlines() == ["h1", str(machine.root)]
    finally:
        client.close()


def test_a_patch_then_a_reboot_brings_the_host_back_on_the_new_version(machine, tmp_path):
    host = machine.remote_host()
    boot_before = ssh.boot_id(host)

    started = time.monotonic()
    result = ansible.play(host, LAB_PATCH, {"rollup_target_version": "8.3.0"}, output_dir=tmp_path)
    patch_seconds = time.monotonic() - started
    assert result.ok, result.output_tail
    assert result.facts["rollup_reboot_required"] is True
    assert machine.installed_version() == "8.3.0"

    machine.power_off()
    with pytest.raises(RemoteError, match="connection refused"):
        ssh.run(host, ["true"])

    new_boot = str(uuid.uuid4())
    machine.power_on(new_boot, machine.installed_version() or "")
    assert ssh.reachable(host)
    assert ssh.boot_id(host) == new_boot != boot_before
    assert ssh.run(host, 'cat "$ROLLUP_LAB_ROOT/etc/rollup-lab/running-version"').stdout == (
        "8.3.0\n"
    )
    assert machine.running_version() == "8.3.0"
    print(f"lab patch over ssh: {patch_seconds:.2f} s")


def test_power_off_ends_open_sessions_and_what_they_started(machine):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(machine.address, username="root", key_filename=str(machine.key), timeout=5)
    channel = client.get_transport().open_session()
    channel.exec_command("sleep 57.125")
    daemon = machine.sshd_pid
    deadline = time.monotonic() + 5
    while not processes.with_cmdline("sleep 57.125") and time.monotonic() < deadline:
        time.sleep(0.02)
    sessions = processes.descendants({daemon})
    assert processes.with_cmdline("sleep 57.125") <= sessions
    assert any("sshd:" in processes.cmdline(pid) for pid in sessions)
    # A daemonized child is no descendant of sshd any more; its environment still says
    # which host it belongs to.
    ssh.run(machine.remote_host(), "setsid sleep 56.125 >/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 5
    while not processes.with_cmdline("sleep 56.125") and time.monotonic() < deadline:
        time.sleep(0.02)
    orphan = processes.with_cmdline("sleep 56.125")
    assert orphan

    machine.power_off()

    assert alive(sessions | orphan | {daemon}) == set()
    channel.status_event.wait(5)
    assert channel.closed or channel.exit_status_ready()
    client.close()


def test_refuse_ssh_keeps_the_daemon_down_until_the_fault_is_cleared(machine):
    host = machine.remote_host()
    machine.set_faults(HostFaults(refuse_ssh=True))
    assert not ssh.reachable(host)

    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.2.1")
    assert not ssh.reachable(host)  # booting does not clear a fault

    machine.set_faults(HostFaults())
    assert ssh.reachable(host)


def test_clearing_refuse_ssh_on_a_powered_off_host_does_not_start_its_daemon(machine):
    machine.set_faults(HostFaults(refuse_ssh=True))
    machine.power_off()
    machine.set_faults(HostFaults())

    assert not ssh.reachable(machine.remote_host())
    assert not machine.sshd_running()


def test_fail_patch_fault_is_a_file_on_the_hosts_disk(machine):
    marker = machine.root / "etc/rollup-lab/fail-patch"

    machine.set_faults(HostFaults(fail_patch=True))
    assert marker.exists()
    machine.set_faults(HostFaults())
    assert not marker.exists()


def test_close_leaves_no_sshd_running(make_machine):
    machines = [make_machine("h1"), make_machine("h2")]
    assert all(sshd_processes(m) for m in machines)

    for m in machines:
        m.close()

    assert [sshd_processes(m) for m in machines] == [set(), set()]
    assert not any(ssh.reachable(m.remote_host(), timeout=1) for m in machines)


def test_a_daemon_left_by_a_crashed_lab_is_replaced(make_machine, tmp_path):
    first = make_machine("h1")
    stale = first.sshd_pid
    # A new lab process on the same dir knows nothing of the old daemon.
    second = LabMachine("h1", tmp_path / "lab", address=first.address)
    try:
        second.power_on(str(uuid.uuid4()), "8.2.1")
        assert not processes.running(stale)
        assert ssh.boot_id(second.remote_host()) == second.boot_id()
    finally:
        second.close()


def test_the_client_key_is_made_once_per_lab_and_private(make_machine):
    first, second = make_machine("h1"), make_machine("h2")

    assert first.key == second.key
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert first.key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_inventory_vars_for_an_ssh_host_turn_host_key_checking_off(machine):
    assert machine.inventory_vars() == {
        "ansible_host": machine.address,
        "ansible_port": 22,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(machine.key),
        "ansible_connection": "ssh",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": hosts.sys.executable,
        "rollup_check_host_keys": False,
    }


def test_inventory_vars_for_a_local_host_carry_its_environment(make_machine):
    machine = make_machine("h9", ssh=False)

    assert machine.inventory_vars() == {
        "ansible_connection": "local",
        "ansible_python_interpreter": hosts.sys.executable,
        "rollup_lab_env": {
            "ROLLUP_LAB_HOST": "h9",
            "ROLLUP_LAB_ROOT": str(machine.root),
            "ROLLUP_LAB_REPO": str(machine.repository),
            "ROLLUP_LAB_SPEED": "200",  # its yum's downloads take lab time too
            "PATH": f"{machine.bin}:{os.environ['PATH']}",
        },
    }
    assert (machine.root / "proc/sys/kernel/random/boot_id").read_text().strip()
    assert machine.running_version() == "8.2.1"
    assert machine.installed_version() is None


def test_without_openssh_server_the_lab_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sshd, "SSHD", tmp_path / "no-sshd")

    with pytest.raises(BadInput) as missing:
        LabMachine("h1", tmp_path, address=loopback.address(30, 149))
    assert missing.value.message == (
        "openssh-server is not installed: apt-get install -y openssh-server, "
        "or run the lab without --ssh"
    )


def test_a_host_name_that_is_no_file_name_is_refused(tmp_path):
    with pytest.raises(BadInput, match=r"^lab host name '\.\./x' is not usable"):
        LabMachine("../x", tmp_path)


def test_an_address_held_by_another_daemon_fails_the_boot_with_sshds_reason(make_machine):
    first = make_machine("h1")
    squatter = LabMachine("h3", first.root.parents[2], address=first.address)

    refused = r"^h3: sshd did not start: .*Address already in use.*; .*Cannot bind any address"
    with pytest.raises(RemoteError, match=refused):
        squatter.power_on(str(uuid.uuid4()), "8.2.1")
    assert not squatter.sshd_running()
    assert ssh.run(first.remote_host(), ["hostname"]).stdout == "h1\n"
