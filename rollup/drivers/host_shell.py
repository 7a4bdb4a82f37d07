"""A shell command on a pool's host over SSH, for drivers that need one (libvirt, Proxmox).

On a lab host ROLLUP_LAB_ROOT (set by its sshd) is the host's root directory; on a real
host it is empty, so `$root/etc/...` is the real path there.
"""

from __future__ import annotations

import threading

from rollup.errors import RemoteError, TransientDriverError
from rollup.remote import RemoteHost, ssh

ROOT = 'root="${ROLLUP_LAB_ROOT:-}"'
# Generous: a login shell's rc files can hold a session for seconds on a busy host.
PROBE_TIMEOUT = 30.0
GRACE = 5.0  # beyond a command's timeout, before we stop waiting for its thread


def run(host: RemoteHost, command: str, what: str, timeout: float = PROBE_TIMEOUT) -> str:
    """stdout of a command that must succeed; TransientDriverError when SSH fails.

    The command runs in a thread we stop waiting for after `timeout` and a grace: a host
    that vanishes mid-session (it is rebooting) can leave an SSH channel that never
    answers, and no snapshot or wait for a reboot may hang on it.
    """
    outcome: list[ssh.CommandResult | BaseException] = []

    def call() -> None:
        try:
            outcome.append(ssh.run(host, command, timeout=timeout))
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    worker = threading.Thread(target=call, name=f"rollup-ssh-{host.name}", daemon=True)
    worker.start()
    worker.join(timeout + GRACE)
    if not outcome:
        raise TransientDriverError(
            f"could not {what}: {host.name} did not answer within {timeout + GRACE:.0f}s",
            "SSH_TIMEOUT",
        )
    result = outcome[0]
    if isinstance(result, RemoteError):
        raise TransientDriverError(f"could not {what}: {result.message}", "SSH_FAILED") from None
    if isinstance(result, BaseException):
        raise result
    if not result.ok:
        detail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.rc}"]
        raise TransientDriverError(
            f"could not {what}: {detail[0]}", "SSH_COMMAND_FAILED", (str(result.rc),)
        )
    return result.stdout
