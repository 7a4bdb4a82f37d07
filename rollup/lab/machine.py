"""What the simulated pool needs from a lab host's "machine": its disk and its daemons.

The pool (lab/pool.py) decides when a host goes down and comes back; the machine
(lab/hosts.py) holds the host's root directory and, with --ssh, its sshd. A patch writes
the version it installs into the root directory; the pool reads it back at the next boot,
as `yum update` followed by a reboot does.

Files under a host's root directory (shared by lab/hosts.py and playbooks/lab-patch.yml):
  etc/rollup-lab/installed-version   the version the last patch installed
  etc/rollup-lab/running-version     the version the host booted with
  etc/rollup-lab/fail-patch          present: the lab patch fails (a fault)
  proc/sys/kernel/random/boot_id     a new uuid at every boot
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

INSTALLED_VERSION = Path("etc/rollup-lab/installed-version")
RUNNING_VERSION = Path("etc/rollup-lab/running-version")
FAIL_PATCH = Path("etc/rollup-lab/fail-patch")
BOOT_ID = Path("proc/sys/kernel/random/boot_id")


class HostMachine(Protocol):
    name: str

    def installed_version(self) -> str | None:
        """The version the host's disk holds (written by a patch), None if never patched."""
        ...

    def power_off(self) -> None:
        """Stop the host's daemons and every session they serve."""
        ...

    def power_on(self, boot_id: str, version: str) -> None:
        """Record the new boot and start the host's daemons again."""
        ...

    def set_faults(self, refuse_ssh: bool, fail_patch: bool) -> None:
        """Apply the host's share of the lab's faults (see lab/faults.py)."""
        ...

    def close(self) -> None:
        """Stop everything for good (lab shutdown)."""
        ...


class MemoryMachine:
    """A machine with no disk and no daemons, for pools that only need the API."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.installed: str | None = None
        self.boot_id = ""
        self.running = True
        self.refuse_ssh = False
        self.fail_patch = False

    def installed_version(self) -> str | None:
        return self.installed

    def power_off(self) -> None:
        self.running = False

    def power_on(self, boot_id: str, version: str) -> None:
        self.boot_id = boot_id
        self.running = True

    def set_faults(self, refuse_ssh: bool, fail_patch: bool) -> None:
        self.refuse_ssh = refuse_ssh
        self.fail_patch = fail_patch

    def close(self) -> None:
        self.running = False
