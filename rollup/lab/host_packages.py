"""One lab host's packages on its disk: real rpm and dnf, or the stand-in's database.

A new XCP-ng / XenServer host of a lab with a mirror (lab/yum_mirror.py) gets a real
rpm database and dnf (lab/dnf_host.py); a host without one, a Proxmox VE node, or a disk
an older lab left keeps the stand-in's (lab/rpmdb.py, lab/yum.py). The pool and the
host's own tools read and write the same one either way.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from rollup.lab import dnf_host, rpm_builds, rpmdb
from rollup.lab.machine import YumRun, patch_fault, release_stream
from rollup.lab.packages import Repository, Rpmdb


class HostPackages:
    def __init__(self, root: Path, repository: Path, mirror: str | None) -> None:
        self.root = root
        self.repository = repository  # the lab's repository.json, its RPMs beside it
        self._busy_timer: threading.Timer | None = None
        if mirror is None:
            return
        if dnf_host.is_real(root):
            dnf_host.set_mirror(root, mirror)  # a new port at every lab start
        elif rpmdb.read(root) is None:
            dnf_host.init(root, mirror)

    @property
    def real(self) -> bool:
        """Whether the host's yum is real dnf over a real rpm database."""
        return dnf_host.is_real(self.root)

    def read(self) -> Rpmdb | None:
        return rpmdb.read(self.root)

    def write(self, packages: Rpmdb) -> None:
        if self.real:
            boot_time = rpmdb.boot_time(self.root) or 0.0
            dnf_host.write(self.root, packages, self._files(packages), boot_time)
        else:
            rpmdb.write(self.root, packages)

    def _files(self, packages: Rpmdb) -> Mapping[str, Path]:
        """The mirror's RPMs; taken in first if the pool installs a build published since
        the mirror last looked (its hosts' dnf makes it look, XenServer's apply does not)."""
        top = rpm_builds.mirror_dir(self.repository)
        files = rpm_builds.rpm_files(top)
        wanted = {f"{name}-{item.version}-{item.release}" for name, item in packages.items()}
        if not wanted <= set(files):
            rpm_builds.refresh(Repository.load(self.repository))
            files = rpm_builds.rpm_files(top)
        return files

    def run_yum(self, host: str, args: Sequence[str]) -> YumRun:
        """`yum ARGS` (an install) as the host's own yum runs it: the fail_patch fault's
        refusal as lab/yum.py words it, else real dnf in the root at its release."""
        if fault := patch_fault(self.root, host):
            return YumRun(1, "", f"Error: {fault}\n")
        python = rpm_builds.dnf_python()
        if python is None:
            return YumRun(1, "", "yum: dnf is not installed here\n")
        boot_time = rpmdb.boot_time(self.root) or 0.0
        stream = release_stream(self.root)
        done = dnf_host.run_dnf(self.root, python, boot_time, stream, args)
        return YumRun(done.returncode, done.stdout, done.stderr)

    def take_lock(self) -> bool:
        if self.real:
            return dnf_host.lock_holder(self.root) is None
        with rpmdb.yum_lock(self.root) as taken:
            return taken

    def downloaded(self) -> set[str]:
        if self.real:
            return set(dnf_host.cached_packages(self.root))
        return rpmdb.downloaded(self.root)

    def set_downloaded(self, nvrs: set[str]) -> None:
        if not self.real:
            rpmdb.set_downloaded(self.root, nvrs)
            return
        for nvr, path in dnf_host.cached_packages(self.root).items():
            if nvr not in nvrs:
                path.unlink(missing_ok=True)

    def set_busy(self, times: int | None) -> None:
        """The yum_busy fault: another process holds yum's lock for `times` looks at it
        (None: until cleared). On real dnf the holder is this lab process, its pid in
        dnf's lock file: dnf waits while that process lives and the file names it. dnf
        looks once a real second (dnf/lock.py); the lock goes between two looks."""
        if not self.real:
            rpmdb.set_busy(self.root, times)
            return
        if self._busy_timer is not None:
            self._busy_timer.cancel()
            self._busy_timer = None
        if times == 0:
            dnf_host.release_lock(self.root)
            return
        dnf_host.hold_lock(self.root)
        if times is not None:
            self._busy_timer = threading.Timer(
                (times - 0.5) * dnf_host.LOCK_LOOK, dnf_host.release_lock, args=(self.root,)
            )
            self._busy_timer.daemon = True
            self._busy_timer.start()

    def close(self) -> None:
        if self.real:
            self.set_busy(0)
