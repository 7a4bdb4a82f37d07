"""Secrets stay secret: the API password (vaulted, or from ROLLUP_API_PASSWORD), the vault
password, and an SSH key's passphrase never show up in what rollup writes or shows.

Looked at: stdout and stderr (log lines, --json events, -v), the plan as JSON and
markdown, the JUnit file, every file under the state directory (the journal's SQLite bytes,
its WAL, debug.log, every host's Ansible output under runs/), sampled while the run goes
and after; every process's command line (rollup, ansible-playbook, ssh) and the
environment of rollup's children, sampled from /proc while the run goes. A hook playbook
that prints every variable Ansible gives the host shows what a playbook can see.

SSH keys with a passphrase are used through ssh-agent, as OpenSSH and Ansible use them:
rollup never holds the passphrase (rollup/remote/ssh.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollup.errors import RemoteError
from rollup.remote import ssh
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env
from tests.security.labs import watched_run

ANSIBLE_VAULT = Path(sys.executable).parent / "ansible-vault"
VAULT_PASSWORD = "vault-pass-7Qm2xZ"
PASSPHRASE = "key-passphrase-Lw93Kd"

# Prints every variable the host has, as a careless or curious hook would.
DUMP_HOSTVARS = """\
- name: Show everything this host knows
  hosts: all
  gather_facts: false
  tasks:
    - name: Every host variable
      ansible.builtin.debug:
        var: hostvars[inventory_hostname]
    - name: Every variable name, and the API password in the environment if it is there
      ansible.builtin.debug:
        msg: >-
          {{ vars | dict2items | map(attribute='key') | list }}
          {{ lookup('env', 'ROLLUP_API_PASSWORD') }}
"""


def inventory_data(lab: Lab) -> dict[str, Any]:
    return yaml.safe_load(lab.inventory.read_text())


def group(data: dict[str, Any]) -> dict[str, Any]:
    return next(iter(data["all"]["children"].values()))


def with_hook(lab: Lab, data: dict[str, Any]) -> None:
    hook = lab.dir.parent / "dump-hostvars.yml"
    hook.write_text(DUMP_HOSTVARS)
    group(data)["vars"]["rollup_pre_host_playbook"] = str(hook)


def vaulted_inventory(lab: Lab) -> tuple[Path, Path]:
    vault_file = lab.dir.parent / "vault-pass"
    vault_file.write_text(VAULT_PASSWORD + "\n")
    vault_file.chmod(0o600)
    encrypted = subprocess.run(
        [str(ANSIBLE_VAULT), "encrypt_string", "--vault-password-file", str(vault_file)],
        input=lab.running.password,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = inventory_data(lab)
    group(data)["vars"]["rollup_api_password"] = "VAULTED"
    with_hook(lab, data)
    text = yaml.safe_dump(data).replace("VAULTED", encrypted.replace("\n", "\n" + " " * 8))
    path = lab.dir.parent / "vaulted.yml"
    path.write_text(text)
    return path, vault_file


def rollup(lab: Lab, *args: str) -> list[str]:
    return [ROLLUP, *args, "--state-dir", str(lab.state)]


def plans(lab: Lab, inventory: Path, environ: dict[str, str], *extra: str) -> str:
    shown = ""
    for fmt in ("json", "markdown"):
        done = subprocess.run(
            rollup(lab, "plan", str(inventory), "--format", fmt, "-v", *extra),
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        shown += done.stdout + done.stderr
    return shown


def run_and_look_everywhere(
    lab: Lab,
    tmp_path: Path,
    inventory: Path,
    environ: dict[str, str],
    secrets: tuple[str, ...],
    *extra: str,
) -> None:
    shown = plans(lab, inventory, environ, *extra)
    junit = tmp_path / "junit.xml"
    command = rollup(
        lab, "run", str(inventory), "--yes", "--no-tui", "--json", "-v", "--junit", str(junit)
    )
    done, watcher = watched_run([*command, *extra], secrets, (lab.state,), environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"outcome":"completed"' in done.stdout.replace(" ", "")
    # The sampler saw the run's children (so it looked while they lived).
    assert {"ansible-playbook", "ssh"} <= watcher.children_seen, watcher.children_seen
    assert watcher.found == []
    # The hook really printed every host variable into the kept Ansible output.
    outputs = list((lab.state / "runs").rglob("*.ansible.log"))
    assert outputs and all("ansible_host" in path.read_text() for path in outputs)

    everything = [shown, done.stdout, done.stderr, junit.read_text()]
    for path in lab.state.rglob("*"):
        if path.is_file():
            everything.append(path.read_bytes().decode("latin-1"))
    assert (lab.state / "journal.sqlite").is_file()
    for secret in secrets:
        for text in everything:
            assert secret not in text


def test_a_vaulted_api_password_appears_nowhere(lab: Lab, tmp_path: Path):
    inventory, vault_file = vaulted_inventory(lab)
    assert lab.running.password not in inventory.read_text()
    run_and_look_everywhere(
        lab,
        tmp_path,
        inventory,
        env(),
        (lab.running.password, VAULT_PASSWORD),
        "--vault-password-file",
        str(vault_file),
    )


def test_an_api_password_from_the_environment_appears_nowhere(lab: Lab, tmp_path: Path):
    """Not even in the environment of ansible-playbook, ssh or the hook's lookup('env')."""
    data = inventory_data(lab)
    del group(data)["vars"]["rollup_api_password"]
    with_hook(lab, data)
    inventory = tmp_path / "from-env.yml"
    inventory.write_text(yaml.safe_dump(data))
    environ = {**env(), "ROLLUP_API_PASSWORD": lab.running.password}
    run_and_look_everywhere(lab, tmp_path, inventory, environ, (lab.running.password,))


@pytest.fixture
def agent(tmp_path: Path):
    """An ssh-agent holding a key protected by PASSPHRASE; yields (key path, SSH_AUTH_SOCK)."""
    key = tmp_path / "keys" / "id_ed25519"
    key.parent.mkdir(mode=0o700)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            PASSPHRASE,
            "-C",
            "rollup-test",
            "-f",
            str(key),
        ],
        check=True,
    )
    socket = tmp_path / "keys" / "agent.sock"
    daemon = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The socket file exists from ssh-agent's bind(), before its listen(): wait until
        # the agent answers (`ssh-add -l` exits 1 for "no identities", 2 for no agent).
        listed = {"SSH_AUTH_SOCK": str(socket), "PATH": os.environ.get("PATH", "")}
        for _ in range(500):
            answer = subprocess.run(["ssh-add", "-l"], env=listed, capture_output=True)
            if answer.returncode != 2:
                break
            time.sleep(0.01)
        askpass = tmp_path / "keys" / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
        askpass.chmod(0o700)
        subprocess.run(
            ["ssh-add", str(key)],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "SSH_AUTH_SOCK": str(socket),
                "SSH_ASKPASS": str(askpass),
                "SSH_ASKPASS_REQUIRE": "force",
                "DISPLAY": ":0",
            },
        )
        yield key, str(socket)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


def test_a_key_with_a_passphrase_works_through_ssh_agent(lab: Lab, tmp_path: Path, agent):
    """The only key the hosts accept is passphrase-protected; rollup (paramiko) and
    ansible-playbook (OpenSSH) both sign with it through the agent, never see the
    passphrase, and nothing shows it."""
    key, socket = agent
    public = (key.parent / (key.name + ".pub")).read_text()
    for machine in lab.running.machines.values():
        (machine.dir / "authorized_keys").write_text(public)  # the lab's own key is refused now
    data = inventory_data(lab)
    for host_vars in group(data)["hosts"].values():
        host_vars["ansible_ssh_private_key_file"] = str(key)
    with_hook(lab, data)
    inventory = tmp_path / "agent.yml"
    inventory.write_text(yaml.safe_dump(data))
    environ = {**env(), "SSH_AUTH_SOCK": socket}
    run_and_look_everywhere(lab, tmp_path, inventory, environ, (PASSPHRASE, lab.running.password))


def test_without_the_agent_the_key_needs_its_passphrase_and_the_message_says_how(
    lab: Lab, agent, monkeypatch
):
    key, _ = agent
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    machine = lab.running.machines["h1"]
    (machine.dir / "authorized_keys").write_text((key.parent / (key.name + ".pub")).read_text())
    host = dataclasses.replace(machine.remote_host(), key_file=str(key))
    with pytest.raises(RemoteError) as raised:
        ssh.connect(host)
    assert f"key {key} needs a passphrase" in raised.value.message
    assert f"ssh-add {key}" in raised.value.message
    assert PASSPHRASE not in raised.value.message
