"""rollup.remote.ssh against real sshd daemons of lab hosts, with real paramiko."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from rollup.errors import RemoteError
from rollup.lab.hosts import LabMachine
from rollup.remote import RemoteHost, ssh


def real_pool_host(machine: LabMachine, known_hosts: Path) -> RemoteHost:
    """The lab host as a real pool's inventory describes a host: keys are checked."""
    return dataclasses.replace(
        machine.remote_host(), check_host_keys=True, known_hosts=str(known_hosts)
    )


def host_key_line(machine: LabMachine) -> str:
    key = (machine.dir / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{machine.address} {key[0]} {key[1]}\n"


def test_argv_with_spaces_quotes_and_substitutions_arrives_as_data(lab_host, tmp_path):
    marker = tmp_path / "pwned"
    argv = ["printf", "%s\\n", "a b", "it's", '"x"', f"$(touch {marker})", "; touch x", "`id`"]

    result = ssh.run(lab_host.remote_host(), argv)

    assert result.ok
    assert result.stdout.splitlines() == argv[2:]
    assert not marker.exists()


def test_a_string_command_is_shell_code_with_the_lab_hosts_environment(lab_host):
    result = ssh.run(lab_host.remote_host(), 'echo "$ROLLUP_LAB_HOST $ROLLUP_LAB_ROOT"; hostname')

    assert result.stdout.splitlines() == [f"h1 {lab_host.root}", "h1"]


def test_a_failing_command_returns_its_rc_and_stderr_without_raising(lab_host):
    result = ssh.run(lab_host.remote_host(), ["sh", "-c", "echo out; echo err >&2; exit 3"])

    assert (result.rc, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n", False)


def test_large_output_on_both_streams_does_not_deadlock(lab_host):
    script = "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2"

    result = ssh.run(lab_host.remote_host(), ["sh", "-c", script], timeout=20)

    assert (len(result.stdout), len(result.stderr)) == (3000000, 3000000)


def test_a_command_that_outlives_its_timeout_raises_naming_the_program(lab_host):
    with pytest.raises(RemoteError, match=r"^h1: command timed out after 1 s: sleep$"):
        ssh.run(lab_host.remote_host(), ["sleep", "30"], timeout=1)


def test_boot_id_is_the_lab_hosts_boot_id(lab_host):
    assert ssh.boot_id(lab_host.remote_host()) == lab_host.boot_id()


def test_a_stopped_host_refuses_connections(lab_host):
    host = lab_host.remote_host()
    lab_host.power_off()

    assert not ssh.reachable(host)
    with pytest.raises(RemoteError) as refused:
        ssh.run(host, ["true"])
    assert refused.value.message == f"h1: connection refused by {host.address}:22"
    assert refused.value.host == "h1"


def test_wait_booted_returns_the_new_boot_id_once_the_host_is_back(lab_host):
    host = lab_host.remote_host()
    old = ssh.boot_id(host)
    lab_host.power_off()
    new = str(uuid.uuid4())
    threading.Timer(0.5, lambda: lab_host.power_on(new, "8.3.0")).start()

    assert ssh.wait_booted(host, since=old, timeout=10, interval=0.2) == new


def test_wait_reachable_gives_up_with_the_last_cause(lab_host):
    host = lab_host.remote_host()
    lab_host.power_off()

    with pytest.raises(RemoteError, match=r"^h1: not reachable after 1 s: h1: connection refused"):
        ssh.wait_reachable(host, timeout=1, interval=0.2)
    assert not ssh.reachable(host), "it gave up on a host that is still down"


def test_an_unknown_host_key_is_refused_with_the_keyscan_fix(lab_host, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    with pytest.raises(RemoteError) as refused:
        ssh.run(real_pool_host(lab_host, known_hosts), ["true"])

    address = lab_host.address
    assert refused.value.message == (
        f"h1: unknown host key for {address}:22: check its fingerprint, then add it: "
        f"ssh-keyscan -p 22 {address} >> {known_hosts}"
    )
    assert not ssh.reachable(real_pool_host(lab_host, known_hosts))


def test_a_changed_host_key_is_refused_as_a_mismatch(lab_host, make_lab_host, tmp_path):
    other = make_lab_host("h2")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(host_key_line(other).replace(other.address or "", lab_host.address))

    with pytest.raises(RemoteError, match=r"^h1: host key mismatch for .* ssh-keygen -R"):
        ssh.run(real_pool_host(lab_host, known_hosts), ["true"])


def test_a_known_host_key_is_accepted(lab_host, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(host_key_line(lab_host))

    assert ssh.run(real_pool_host(lab_host, known_hosts), ["hostname"]).stdout == "h1\n"


def test_a_key_the_host_does_not_accept_fails_authentication(lab_host, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", stranger], check=True)
    host = dataclasses.replace(lab_host.remote_host(), key_file=str(stranger))

    with pytest.raises(
        RemoteError, match=rf"^h1: authentication failed for root@.*\(key {stranger}\)"
    ):
        ssh.run(host, ["true"])


def test_a_local_host_runs_commands_here_with_its_environment(make_lab_host):
    machine = make_lab_host("h3", ssh=False)
    host = machine.remote_host()

    result = ssh.run(host, ["sh", "-c", 'echo "$ROLLUP_LAB_HOST" "$1"', "-", "a $(b)"])

    assert result.stdout == "h3 a $(b)\n"
    assert ssh.reachable(host)
    assert ssh.boot_id(host) == machine.boot_id()
