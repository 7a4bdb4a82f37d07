"""The lab's stand-in `yum` (lab/yum.py, what a lab host runs on a machine without dnf)
held against the real dnf a lab host runs where there is one (lab/dnf_host.py), on the
same inputs: one repository of the lab's real RPMs (rpmbuild, createrepo_c) served by the
lab's mirror, and one host's installed packages twice, as the stand-in's database and as
a real rpm database.

What the stand-in must answer as the real tool does: the pending list and check-update's
exit code, what `update` installs for no argument, for one package and for one argument
holding two (one pattern: nothing), and `--downloadonly` installing nothing. Where yum 3
(what XCP-ng runs) and dnf 4 differ, the test says so: yum 3 exits 0 when no argument
matched, dnf 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from rollup.lab import dnf_host, rpm_builds, rpmdb, yum
from rollup.lab.host_packages import HostPackages
from rollup.lab.machine import BOOT_TIME, RUNNING_VERSION
from rollup.lab.package_seed import seed, seeded_rpmdb
from rollup.lab.packages import Installed
from rollup.lab.yum_mirror import YumMirror

STREAM = "8.3"


class Pair:
    """One host twice: the stand-in yum on its database, real dnf on an rpm one."""

    def __init__(self, tmp: Path) -> None:
        self.repository = seed([STREAM], 7, tmp / "repo" / "repository.json")
        rpm_builds.refresh(self.repository)
        self.mirror = YumMirror(tmp / "repo", speed=lambda: 1e6)
        self.mirror.start()
        have = seeded_rpmdb(self.repository, STREAM, 0, 3, time.time())
        self.lab_root, self.real_root = tmp / "lab-host", tmp / "real-host"
        for root in (self.lab_root, self.real_root):
            (root / RUNNING_VERSION).parent.mkdir(parents=True)
            (root / RUNNING_VERSION).write_text("8.3.0\n")
            (root / BOOT_TIME).write_text(f"{time.time():.3f}\n")
        rpmdb.write(self.lab_root, have)
        self.real = HostPackages(self.real_root, self.repository.path or tmp, self.mirror.url)
        self.real.write(have)

    def lab_yum(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        env = {
            "ROLLUP_LAB_ROOT": str(self.lab_root),
            "ROLLUP_LAB_REPO": str(self.repository.path),
            "ROLLUP_LAB_SPEED": "1000000",
        }
        with _environment(env), contextlib.redirect_stdout(out):
            code = yum.main(["yum", "-y", *args])
        return code, out.getvalue()

    def real_dnf(self, *args: str) -> tuple[int, str]:
        python = rpm_builds.dnf_python()
        assert python is not None
        done = dnf_host.run_dnf(self.real_root, python, time.time(), STREAM, ["-y", *args])
        return done.returncode, done.stdout

    def lab_installed(self) -> dict[str, str]:
        return as_versions(rpmdb.read(self.lab_root) or {})

    def real_installed(self) -> dict[str, str]:
        return as_versions(self.real.read() or {})


def as_versions(packages: Mapping[str, Installed]) -> dict[str, str]:
    return {name: f"{item.version}-{item.release}" for name, item in packages.items()}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pending(output: str) -> set[tuple[str, str]]:
    """check-update's lines `name.arch  version-release  repository`."""
    found = set()
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[2] == "xcp-ng-updates" and "." in words[0]:
            found.add((words[0].rsplit(".", 1)[0], words[1]))
    return found


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    missing = rpm_builds.missing_tools()
    assert not missing, f"{', '.join(missing)} not installed: see .ci/run's apt-get install"
    made = Pair(tmp_path)
    yield made
    made.mirror.stop()


def test_the_pending_list_and_check_updates_exit_code_are_dnfs(pair: Pair):
    assert pair.lab_installed() == pair.real_installed()
    lab_code, lab_out = pair.lab_yum("check-update")
    real_code, real_out = pair.real_dnf("check-update")
    assert (lab_code, pending(lab_out)) == (real_code, pending(real_out))
    assert lab_code == 100 and pending(lab_out)


def test_one_named_package_installs_that_one_in_both(pair: Pair):
    _, out = pair.real_dnf("check-update")
    name, version = sorted(pending(out))[0]
    assert pair.lab_yum("update", f"{name}-{version}")[0] == 0
    assert pair.real_dnf("update", f"{name}-{version}")[0] == 0
    assert pair.lab_installed() == pair.real_installed()
    assert pair.lab_installed()[name] == version


def test_one_argument_holding_two_packages_matches_nothing_in_both(pair: Pair):
    # What updater.py makes of `packages: "a-1-2 b-3-4"`: one argument, one pattern.
    _, out = pair.real_dnf("check-update")
    two = " ".join(f"{name}-{version}" for name, version in sorted(pending(out))[:2])
    before = pair.real_installed()
    lab_code, lab_out = pair.lab_yum("update", two)
    real_code, real_out = pair.real_dnf("update", two)
    assert pair.lab_installed() == pair.real_installed() == before
    assert f"No Match for argument: {two}" in lab_out
    assert f"No match for argument: {two}" in real_out
    # yum 3 (XCP-ng) exits 0 when nothing matched; dnf 4 exits 1.
    assert (lab_code, real_code) == (0, 1)


def test_updating_everything_and_download_only_agree(pair: Pair):
    before = pair.real_installed()
    assert pair.lab_yum("update", "--downloadonly")[0] == 0
    assert pair.real_dnf("update", "--downloadonly")[0] == 0
    assert pair.lab_installed() == pair.real_installed() == before
    _, out = pair.real_dnf("check-update")
    fetched = set(dnf_host.cached_packages(pair.real_root))
    assert fetched == {f"{name}-{version}" for name, version in pending(out)}
    assert rpmdb.downloaded(pair.lab_root) == {
        f"{name}-{version}" for name, version in pending(out)
    }
    assert pair.lab_yum("update")[0] == pair.real_dnf("update")[0] == 0
    assert pair.lab_installed() == pair.real_installed() != before
    assert pair.lab_yum("check-update")[0] == pair.real_dnf("check-update")[0] == 0
