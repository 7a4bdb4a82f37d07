"""What the simulated pool needs from a lab host's "machine": its disk and its daemons.

The pool (lab/pool.py) decides when a host goes down and comes back; the machine
(lab/hosts.py) holds the host's root directory and, with --ssh, its sshd. Packages are
installed onto the disk (by the pool's own update calls, or by `yum` in an SSH session,
lab/yum.py); the pool reads them back, and a reboot starts what the disk then holds.

Files under a host's root directory (shared by lab/hosts.py, lab/yum.py and
playbooks/lab-patch.yml):
  var/lib/rpm/rpmdb.sqlite              installed packages: a real rpm database, with dnf's
                                        config, cache and lock beside it (lab/dnf_host.py)
  var/lib/rpm/rollup-lab.json           or the stand-in's: name → version, release, time
  etc/rollup-lab/booted-packages.json   the installed packages when the host last booted
  etc/rollup-lab/boot-time              when it last booted (real time, epoch seconds)
  etc/rollup-lab/installed-version      the release a yum upgrade installed (lab-patch.yml)
  etc/rollup-lab/running-version        the version the host booted with
  etc/rollup-lab/fail-patch             present: the lab patch and yum fail (a fault)
  etc/rollup-lab/yum-busy               present: yum's lock is held by another process for
                                        this many more attempts ("always": for good)
  proc/sys/kernel/random/boot_id        a new uuid at every boot
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rollup.lab.host_files import read_value
from rollup.lab.packages import Rpmdb, stream_of

if TYPE_CHECKING:
    # Not at run time: a lab host's yum, rpm and apt import this module at every call,
    # and the faults' module brings YAML.
    from rollup.lab.faults import HostFaults

RPMDB = Path("var/lib/rpm/rollup-lab.json")
BOOTED_PACKAGES = Path("etc/rollup-lab/booted-packages.json")
BOOT_TIME = Path("etc/rollup-lab/boot-time")
INSTALLED_VERSION = Path("etc/rollup-lab/installed-version")
RUNNING_VERSION = Path("etc/rollup-lab/running-version")
FAIL_PATCH = Path("etc/rollup-lab/fail-patch")
YUM_BUSY = Path("etc/rollup-lab/yum-busy")
BOOT_ID = Path("proc/sys/kernel/random/boot_id")
DOWNLOADED = Path("var/cache/yum/rollup-lab-downloaded")  # NVRs in yum's cache, one a line


def patch_fault(root: Path, host: str) -> str:
    """Why an install on this disk fails now (the lab's fail_patch fault); "" if none."""
    if not (root / FAIL_PATCH).exists():
        return ""
    return f"lab fault fail-patch is set on {host} ({root / FAIL_PATCH} exists)"


def release_stream(root: Path) -> str:
    """The release stream the disk's packages come from: the release a yum upgrade
    installed, else the one the host runs ("8.3")."""
    release = read_value(root / INSTALLED_VERSION) or read_value(root / RUNNING_VERSION)
    return stream_of(release or "")


@dataclass(frozen=True)
class YumRun:
    """What one `yum` run on a host ended with."""

    returncode: int
    stdout: str
    stderr: str


class HostMachine(Protocol):
    name: str

    def installed_version(self) -> str | None:
        """The release a yum upgrade installed on the disk, None if none did."""
        ...

    def clear_installed_version(self) -> None:
        """Forget it (the host booted it, or an installer replaced the disk)."""
        ...

    def packages(self) -> Rpmdb | None:
        """The installed packages; None for a disk nothing was ever installed on."""
        ...

    def set_packages(self, rpmdb: Rpmdb) -> None: ...

    def booted_packages(self) -> Rpmdb | None:
        """The packages installed when the host last booted (what runs now)."""
        ...

    def run_yum(self, args: Sequence[str]) -> YumRun | None:
        """Run the host's own yum (real dnf); None when its yum is the lab's stand-in."""
        ...

    def take_yum_lock(self) -> bool:
        """Take yum's lock for one operation: False when another process holds it."""
        ...

    def downloaded(self) -> set[str]:
        """The packages (name-version-release) in yum's cache, downloaded not installed."""
        ...

    def set_downloaded(self, nvrs: set[str]) -> None: ...

    def patch_fault(self) -> bool:
        """Whether an install fails here now (the lab's fail_patch fault)."""
        ...

    def power_off(self) -> None:
        """Stop the host's daemons and every session they serve."""
        ...

    def power_on(self, boot_id: str, version: str) -> None:
        """Record the new boot and start the host's daemons again."""
        ...

    def set_faults(self, faults: HostFaults) -> None:
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
        self.rpmdb: Rpmdb | None = None
        self.booted: Rpmdb | None = None
        self.boot_id = ""
        self.boot_time = 0.0
        self.running = True
        from rollup.lab.faults import HostFaults

        self.faults = HostFaults()
        self.yum_busy: int | None = 0  # attempts still refused; None: every one
        self.cache: set[str] = set()

    def downloaded(self) -> set[str]:
        return set(self.cache)

    def set_downloaded(self, nvrs: set[str]) -> None:
        self.cache = set(nvrs)

    def installed_version(self) -> str | None:
        return self.installed

    def clear_installed_version(self) -> None:
        self.installed = None

    def packages(self) -> Rpmdb | None:
        return dict(self.rpmdb) if self.rpmdb is not None else None

    def set_packages(self, rpmdb: Rpmdb) -> None:
        self.rpmdb = dict(rpmdb)

    def booted_packages(self) -> Rpmdb | None:
        return dict(self.booted) if self.booted is not None else None

    def run_yum(self, args: Sequence[str]) -> YumRun | None:
        return None

    def take_yum_lock(self) -> bool:
        if self.yum_busy is None:
            return False
        if self.yum_busy > 0:
            self.yum_busy -= 1
            return False
        return True

    def patch_fault(self) -> bool:
        return self.faults.fail_patch

    def power_off(self) -> None:
        self.running = False

    def power_on(self, boot_id: str, version: str) -> None:
        self.boot_id = boot_id
        self.boot_time = time.time()
        self.booted = self.packages()
        self.running = True

    def set_faults(self, faults: HostFaults) -> None:
        self.faults = faults
        self.yum_busy = None if faults.yum_busy is None else faults.yum_busy

    def close(self) -> None:
        self.running = False
