"""A run lock kept in a file on a pool's host, over SSH (drivers without a pool object).

libvirt keeps it in `/var/lib/rollup/lock` on the first host of the inventory group (on
disk, so it survives that host's reboot); Proxmox VE in `/etc/pve/rollup/lock`, the
cluster file system every node shows alike, so any node that answers will do. Creating
it is atomic: the shell's noclobber (`set -C`) opens the file with O_EXCL. Replacing it
compares the text just before the `mv`: see rollup/drivers/run_lock.py for the window
that leaves.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

from rollup.drivers.host_shell import ROOT, run
from rollup.errors import TransientDriverError
from rollup.remote import RemoteHost


class HostFileStore:
    """A LockStore in the file `path` (under the host's root) on the first of `hosts`
    that answers: one host for a file of its own, several for a shared file system."""

    def __init__(self, hosts: Sequence[RemoteHost], pool: str, path: str) -> None:
        self.hosts = tuple(hosts)
        self.pool = pool
        self._lock = f'"$root/{path}"'
        self._dir = f'"$root/{path.rsplit("/", 1)[0]}"'

    def read(self) -> str | None:
        text = self._run(f"{ROOT}; cat {self._lock} 2>/dev/null || true", "read the run lock")
        return text.strip() or None

    def create(self, text: str) -> bool:
        lock = self._lock
        command = (
            f"{ROOT}; mkdir -p {self._dir} &&"
            f" (set -C; printf '%s\\n' {shlex.quote(text)} > {lock}) 2>/dev/null"
            " && echo taken || true"
        )
        return self._run(command, "take the run lock").strip() == "taken"

    def replace(self, expected: str, text: str | None) -> bool:
        lock = self._lock
        if text is None:
            write = f"rm -f {lock}"
        else:
            # Written aside then renamed, so a reader never sees half a lock.
            write = (
                f"printf '%s\\n' {shlex.quote(text)} > {lock}.partial && mv {lock}.partial {lock}"
            )
        command = (
            f'{ROOT}; if [ "$(cat {lock} 2>/dev/null)" = {shlex.quote(expected)} ]; then'
            f" {write} && echo replaced; fi"
        )
        return self._run(command, "replace the run lock").strip() == "replaced"

    def _run(self, command: str, what: str) -> str:
        return first_answer(self.hosts, lambda host: run(host, command, what))


def first_answer(hosts: Sequence[RemoteHost], call: Callable[[RemoteHost], str]) -> str:
    """`call` on the first host whose SSH answers; the last failure if none does."""
    failure: TransientDriverError | None = None
    for host in hosts:
        try:
            return call(host)
        except TransientDriverError as error:
            if error.code == "SSH_COMMAND_FAILED":
                raise  # the host answered: the command itself failed
            failure = error
    assert failure is not None, "no hosts to ask"
    raise failure
