"""What the rollout needs from a host's operating system: SSH and Ansible.

`RemoteHost` is built by rollup/config/inventory.py from an inventory host's variables;
the Ansible side passes `ansible_vars` (without rollup's secrets) through untouched, so
whatever connection settings a user keeps in an inventory work for the patch exactly as
they do for ansible-playbook. `Patcher` is what the run asks of a host's operating
system (rollup/remote/patcher.py is the real one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class RemoteHost:
    name: str  # inventory hostname
    address: str  # ansible_host, else the inventory hostname
    port: int = 22
    user: str = "root"
    key_file: str | None = None  # ansible_ssh_private_key_file
    # False only where an inventory opts out (the lab); real pools check known_hosts.
    check_host_keys: bool = True
    known_hosts: str | None = None  # a known_hosts file; None: the user's default
    connection: Literal["ssh", "local"] = "ssh"
    # Only for connection "local" (the lab without --ssh): the host's environment.
    environment: Mapping[str, str] = field(default_factory=dict)
    # The host's inventory variables, verbatim, for ansible-runner's inventory.
    ansible_vars: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PatchResult:
    ok: bool
    reboot_required: bool = True
    failed_task: str = ""
    message: str = ""
    output_tail: str = ""
    output_file: str = ""


TaskCallback = Callable[[str, str, str], None]  # task, status, message


class Patcher(Protocol):
    """What a host's operating system must do for us."""

    def play(
        self,
        host: RemoteHost,
        playbook: str,
        extravars: Mapping[str, Any],
        on_task: TaskCallback,
        cancelled: Callable[[], bool],
    ) -> PatchResult: ...

    def reachable(self, host: RemoteHost) -> bool: ...

    def command(self, host: RemoteHost, line: str, timeout: float) -> tuple[int, str, str]:
        """Run one shell command on the host: (exit code, stdout, stderr); raises
        RemoteError when the host cannot be reached or the command outlives `timeout`."""
        ...
