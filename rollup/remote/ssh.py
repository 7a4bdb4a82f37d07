"""Commands on a host's operating system over SSH (paramiko): reachability, boot id, run.

Every call opens its own connection and closes it: a connection kept across a reboot
would hide the reboot, and one connect costs about 0.2 s. Commands given as argv lists
are quoted here, so host and VM names from a pool stay data and never become shell code.
Errors leave this module as `RemoteError` with a one-line message naming the host and
the cause (and the fix, for host keys).

A host with connection "local" (the lab without --ssh) runs commands in a local
subprocess with the host's environment instead.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from rollup.errors import RemoteError
from rollup.remote import RemoteHost

CONNECT_TIMEOUT = 5.0
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
# ROLLUP_LAB_ROOT is empty on a real host, so this reads the real /proc file there.
BOOT_ID_COMMAND = 'cat "${ROLLUP_LAB_ROOT:-}/proc/sys/kernel/random/boot_id"'
_POLL = 0.005


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def command_line(command: Sequence[str] | str) -> str:
    """An argv list quoted for the remote shell; a string is taken as shell code as is."""
    if isinstance(command, str):
        return command
    return shlex.join(command)


def reachable(host: RemoteHost, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether the host accepts an SSH login now (a local host always does)."""
    if host.connection == "local":
        return True
    try:
        client = connect(host, timeout)
    except RemoteError:
        return False
    client.close()
    return True


def run(host: RemoteHost, command: Sequence[str] | str, timeout: float = 60.0) -> CommandResult:
    """Run a command and return its exit code and output; a non-zero rc is not an error.

    Raises RemoteError when the host cannot be reached or the command outlives `timeout`.
    """
    line = command_line(command)
    if host.connection == "local":
        return _run_local(host, line, timeout)
    client = connect(host, timeout=min(timeout, CONNECT_TIMEOUT))
    try:
        return _run_channel(client, host, line, timeout)
    except (paramiko.SSHException, OSError) as error:
        raise RemoteError(f"{host.name}: SSH session failed: {error}", host.name) from error
    finally:
        client.close()


def boot_id(host: RemoteHost, timeout: float = 10.0) -> str:
    """The host's current boot id: a new value after every boot."""
    result = run(host, BOOT_ID_COMMAND, timeout)
    value = result.stdout.strip()
    if not result.ok or not value:
        raise RemoteError(
            f"{host.name}: cannot read the boot id (rc {result.rc})",
            host.name,
            result.stderr[-2000:],
        )
    return value


def wait_reachable(host: RemoteHost, timeout: float, interval: float = 1.0) -> None:
    """Wait until the host accepts SSH logins; RemoteError with the last cause on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(host, timeout=min(CONNECT_TIMEOUT, max(deadline - time.monotonic(), 0.1)))
        except RemoteError as error:
            if time.monotonic() + interval > deadline:
                raise RemoteError(
                    f"{host.name}: not reachable after {timeout:.0f} s: {error.message}",
                    host.name,
                ) from error
            time.sleep(interval)
        else:
            return


def wait_booted(host: RemoteHost, since: str, timeout: float, interval: float = 1.0) -> str:
    """Wait until the host answers with a boot id other than `since`; return the new one."""
    deadline = time.monotonic() + timeout
    last = "it still reports the old boot id"
    while True:
        try:
            current = boot_id(host, timeout=min(10.0, max(deadline - time.monotonic(), 0.1)))
        except RemoteError as error:
            last = error.message
        else:
            if current != since:
                return current
        if time.monotonic() + interval > deadline:
            raise RemoteError(f"{host.name}: no new boot after {timeout:.0f} s: {last}", host.name)
        time.sleep(interval)


def connect(host: RemoteHost, timeout: float = CONNECT_TIMEOUT) -> paramiko.SSHClient:
    """An authenticated SSH client for the host; the caller closes it."""
    client = paramiko.SSHClient()
    if host.check_host_keys:
        if host.known_hosts is not None:
            client.load_system_host_keys(host.known_hosts)
        else:
            if SYSTEM_KNOWN_HOSTS.exists():
                client.load_system_host_keys(str(SYSTEM_KNOWN_HOSTS))
            client.load_system_host_keys()  # ~/.ssh/known_hosts, if there is one
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        # Only inventories that opt out (the lab) get here: their host keys are throwaway.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            host.address,
            port=host.port,
            username=host.user,
            key_filename=host.key_file,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            look_for_keys=host.key_file is None,
            # After the key file, as OpenSSH (and so Ansible) does: a key with a passphrase
            # is used through ssh-agent, and rollup never holds the passphrase.
            allow_agent=True,
        )
    except Exception as error:
        client.close()
        raise RemoteError(f"{host.name}: {_cause(host, error)}", host.name) from error
    return client


def _cause(host: RemoteHost, error: Exception) -> str:
    """One line that says why the connection failed and, where we know it, the fix."""
    where = f"{host.address}:{host.port}"
    known_hosts = host.known_hosts or "~/.ssh/known_hosts"
    key_name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    if isinstance(error, paramiko.BadHostKeyException):
        return (
            f"host key mismatch for {where}: the host was reinstalled or someone is in the "
            f"middle; if the new key is right, run ssh-keygen -R '{key_name}' -f {known_hosts} "
            f"and add it with ssh-keyscan -p {host.port} {host.address} >> {known_hosts}"
        )
    if isinstance(error, paramiko.PasswordRequiredException):
        return (
            f"key {host.key_file} needs a passphrase: load it into ssh-agent"
            f" (ssh-add {host.key_file}) and run rollup with SSH_AUTH_SOCK set"
        )
    if isinstance(error, paramiko.AuthenticationException):
        key = f"key {host.key_file}" if host.key_file else "default keys and agent"
        return f"authentication failed for {host.user}@{where} ({key})"
    if isinstance(error, paramiko.SSHException) and "known_hosts" in str(error):
        return (
            f"unknown host key for {where}: check its fingerprint, then add it: "
            f"ssh-keyscan -p {host.port} {host.address} >> {known_hosts}"
        )
    if isinstance(error, NoValidConnectionsError):
        causes = set(error.errors.values())
        if all(isinstance(cause, ConnectionRefusedError) for cause in causes):
            return f"connection refused by {where}"
        return f"cannot connect to {where}: {'; '.join(sorted(map(str, causes)))}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(error, TimeoutError):
        return f"connection to {where} timed out"
    if isinstance(error, paramiko.SSHException):
        return f"SSH failed with {where}: {error}"
    if isinstance(error, OSError):
        return f"cannot connect to {where}: {error.strerror or error}"
    return f"cannot connect to {where}: {type(error).__name__}: {error}"


def _run_channel(
    client: paramiko.SSHClient, host: RemoteHost, line: str, timeout: float
) -> CommandResult:
    transport = client.get_transport()
    assert transport is not None  # connect() returned, so the transport is up
    channel = transport.open_session(timeout=timeout)
    channel.exec_command(line)
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = time.monotonic() + timeout
    # Read both streams as they come: waiting on one while the other fills its window
    # would deadlock a chatty command.
    while True:
        busy = False
        if channel.recv_ready():
            out.append(channel.recv(65536))
            busy = True
        if channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))
            busy = True
        if not busy:
            if channel.exit_status_ready():
                break
            if time.monotonic() > deadline:
                channel.close()
                raise RemoteError(
                    f"{host.name}: command timed out after {timeout:.0f} s: {_program(line)}",
                    host.name,
                    _decode(b"".join(out) + b"".join(err))[-2000:],
                )
            time.sleep(_POLL)
    return CommandResult(channel.recv_exit_status(), _decode(b"".join(out)), _decode(b"".join(err)))


def _run_local(host: RemoteHost, line: str, timeout: float) -> CommandResult:
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", line],
            env={**os.environ, **host.environment},
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        tail = _decode((error.stdout or b"") + (error.stderr or b""))[-2000:]
        raise RemoteError(
            f"{host.name}: command timed out after {timeout:.0f} s: {_program(line)}",
            host.name,
            tail,
        ) from error
    return CommandResult(done.returncode, _decode(done.stdout), _decode(done.stderr))


def _program(line: str) -> str:
    """The program a command line starts: enough to say what timed out, nothing more."""
    return line.split(maxsplit=1)[0] if line.strip() else "(empty command)"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
