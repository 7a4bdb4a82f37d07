"""A lab host's package database on its disk: shared by the pool and the host's own yum.

The pool installs through it when a client calls the updater plugin or apply_updates;
`yum` in the host's SSH sessions (lab/yum.py) installs through it too. Both hold yum's
lock while they change it, as on a real host: one of them finds it held and says so.
File names are lab/machine.py's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from rollup.lab import dnf_host
from rollup.lab.host_files import read_value, write_atomically
from rollup.lab.machine import BOOT_TIME, BOOTED_PACKAGES, DOWNLOADED, RPMDB, YUM_BUSY
from rollup.lab.packages import Rpmdb, rpmdb_from_json, rpmdb_to_json

YUM_PID = Path("var/run/yum.pid")


def read(root: Path) -> Rpmdb | None:
    """The host's installed packages: its real rpm database's (lab/dnf_host.py) or the
    stand-in's; None for a disk nothing was ever installed on."""
    if dnf_host.is_real(root):
        return dnf_host.read(root) or None
    text = read_value(root / RPMDB)
    return rpmdb_from_json(text) if text else None


def write(root: Path, rpmdb: Rpmdb) -> None:
    write_atomically(root / RPMDB, rpmdb_to_json(rpmdb) + "\n")


def downloaded(root: Path) -> set[str]:
    """What `yum --downloadonly` left in the host's cache (name-version-release)."""
    return set((read_value(root / DOWNLOADED) or "").split())


def set_downloaded(root: Path, nvrs: set[str]) -> None:
    write_atomically(root / DOWNLOADED, "".join(f"{nvr}\n" for nvr in sorted(nvrs)))


def booted(root: Path) -> Rpmdb | None:
    text = read_value(root / BOOTED_PACKAGES)
    return rpmdb_from_json(text) if text else None


def boot_time(root: Path) -> float | None:
    text = read_value(root / BOOT_TIME)
    return float(text) if text else None


def record_boot(root: Path) -> None:
    """The host just booted: what is installed now is what runs."""
    write_atomically(root / BOOTED_PACKAGES, rpmdb_to_json(read(root) or {}) + "\n")
    now = dnf_host.boot_second(root) if dnf_host.is_real(root) else time.time()
    write_atomically(root / BOOT_TIME, f"{now:.3f}\n")


def set_busy(root: Path, times: int | None) -> None:
    """The yum_busy fault: yum's lock is held for `times` more attempts (None: always)."""
    if times == 0:
        (root / YUM_BUSY).unlink(missing_ok=True)
    else:
        write_atomically(root / YUM_BUSY, "always\n" if times is None else f"{times}\n")


@contextlib.contextmanager
def yum_lock(root: Path) -> Iterator[bool]:
    """Hold yum's lock for one operation; yields False when another holds it (or the
    yum_busy fault says so, counting the attempt)."""
    if _fault_holds_lock(root):
        yield False
        return
    path = root / YUM_PID
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def _fault_holds_lock(root: Path) -> bool:
    # Read and counted down under a lock of its own: the pool and a yum may race here.
    path = root / YUM_BUSY
    guard = root / (str(YUM_BUSY) + ".lock")
    if not path.exists():
        return False
    fd = os.open(guard, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        left = read_value(path)
        if left is None:
            return False
        if left == "always":
            return True
        remaining = int(left) - 1
        if remaining <= 0:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, f"{remaining}\n")
        return True
    finally:
        os.close(fd)
