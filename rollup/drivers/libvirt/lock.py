"""Where a libvirt pool keeps its run lock: a file on the pool's first host, over SSH.

libvirt has no pool object to hold a lock, so the lock lives where every controller
looks the same way: `/var/lib/rollup/lock` on the first host of the inventory group (on
disk, so it survives that host's reboot). Creating it is atomic: the shell's noclobber
(`set -C`) opens the file with O_EXCL. Replacing it compares the text just before the
`mv`: see rollup/drivers/run_lock.py for the window that leaves.
"""

from __future__ import annotations

import shlex

from rollup.drivers.libvirt.hostos import LOCK, ROOT, run
from rollup.remote import RemoteHost


class HostFileStore:
    """A LockStore in a file on one host of the pool."""

    def __init__(self, host: RemoteHost, pool: str) -> None:
        self.host = host
        self.pool = pool

    def read(self) -> str | None:
        text = run(self.host, f"{ROOT}; cat {LOCK} 2>/dev/null || true", "read the run lock")
        return text.strip() or None

    def create(self, text: str) -> bool:
        command = (
            f'{ROOT}; mkdir -p "$root/var/lib/rollup" &&'
            f" (set -C; printf '%s\\n' {shlex.quote(text)} > {LOCK}) 2>/dev/null"
            " && echo taken || true"
        )
        return run(self.host, command, "take the run lock").strip() == "taken"

    def replace(self, expected: str, text: str | None) -> bool:
        if text is None:
            write = f"rm -f {LOCK}"
        else:
            # Written aside then renamed, so a reader never sees half a lock.
            write = (
                f"printf '%s\\n' {shlex.quote(text)} > {LOCK}.partial && mv {LOCK}.partial {LOCK}"
            )
        command = (
            f'{ROOT}; if [ "$(cat {LOCK} 2>/dev/null)" = {shlex.quote(expected)} ]; then'
            f" {write} && echo replaced; fi"
        )
        return run(self.host, command, "replace the run lock").strip() == "replaced"
