"""Powered-on lab hosts (rollup.lab.hosts.LabMachine) for tests, closed afterwards, and a
shell on one over its real sshd."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko

from rollup.lab.hosts import LabMachine

MakeHost = Callable[..., LabMachine]
Run = Callable[[str], tuple[int, str, str]]  # a command → exit status, stdout, stderr
# As the lab pools of the tests run: a host's yum downloads (lab seconds) take little time.
SPEED = 200.0


def lab_hosts(directory: Path, addresses: Iterator[str]) -> Iterator[MakeHost]:
    """For a fixture: yields a maker of hosts (ssh=False: the local connection)."""
    made: list[LabMachine] = []

    def make(
        name: str = "h1",
        *,
        ssh: bool = True,
        version: str = "8.2.1",
        speed: float = SPEED,
        **machine_options: Any,
    ) -> LabMachine:
        address = next(addresses) if ssh else None
        machine = LabMachine(
            name, directory / "lab", address=address, speed=speed, **machine_options
        )
        made.append(machine)
        machine.power_on(str(uuid.uuid4()), version)
        return machine

    yield make
    for machine in made:
        machine.close()


def shell(machine: LabMachine) -> Run:
    """Commands in an SSH session of `machine`, as root, the way a playbook reaches it."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # lab only: keys are new
    client.connect(
        machine.address,
        port=machine.port,
        username="root",
        key_filename=str(machine.key),
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
    )

    def run(command: str) -> tuple[int, str, str]:
        _, stdout, stderr = client.exec_command(command, timeout=30)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err

    return run
