"""The lab's package repository as real RPMs, for tests that hold the lab's yum against
real dnf: each build an empty x86_64 package of the same name, version, release and
summary (rpmbuild), the lot a yum repository (createrepo_c), and a host's installed
packages a real rpm database in its own root."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from rollup.lab.packages import Build, Installed

TOOLS = ("rpmbuild", "createrepo_c", "rpm", "dnf")
SPEC = """Name: {name}
Version: {version}
Release: {release}
Summary: {summary}
License: GPLv2
%description
{summary}
%files
"""


def missing() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def build_rpms(builds: Iterable[Build], top: Path) -> dict[str, Path]:
    """Each build as an RPM file, by name-version-release."""
    made: dict[str, Path] = {}
    specs = top / "SPECS"
    specs.mkdir(parents=True, exist_ok=True)
    for build in builds:
        spec = specs / f"{build.nvr}.spec"
        spec.write_text(
            SPEC.format(
                name=build.name, version=build.version, release=build.release,
                summary=build.summary,
            )
        )  # fmt: skip
        subprocess.run(
            ["rpmbuild", "-bb", "--quiet", "--target", "x86_64", "--define", f"_topdir {top}",
             str(spec)],
            check=True, capture_output=True,
        )  # fmt: skip
        made[build.nvr] = top / "RPMS" / "x86_64" / f"{build.nvr}.x86_64.rpm"
    return made


def make_repository(rpms: Iterable[Path], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for rpm in rpms:
        shutil.copy2(rpm, directory / rpm.name)
    subprocess.run(["createrepo_c", "-q", str(directory)], check=True, capture_output=True)
    return directory


class Served:
    """A directory served over HTTP on the loopback, as a package mirror."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


def make_root(root: Path, baseurl: str, installed: Iterable[Path]) -> None:
    """A host root whose rpm database holds `installed`, and whose yum config has the lab's
    repository as xcp-ng-updates."""
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/yum.repos.d/xcp-ng.repo").write_text(
        f"[xcp-ng-updates]\nname=XCP-ng updates (lab)\nbaseurl={baseurl}\nenabled=1\ngpgcheck=0\n"
    )
    subprocess.run(["rpm", "--root", str(root), "--initdb"], check=True, capture_output=True)
    subprocess.run(
        ["rpm", "--root", str(root), "-i", "--justdb", "--nodeps", *map(str, installed)],
        check=True, capture_output=True,
    )  # fmt: skip


def dnf(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dnf", "-y", f"--installroot={root}", "--releasever=8.3", "--disableplugin=*",
         f"--setopt=reposdir={root}/etc/yum.repos.d", f"--setopt=cachedir={root}/var/cache/dnf",
         "--setopt=keepcache=1", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def installed(root: Path) -> dict[str, str]:
    done = subprocess.run(
        ["rpm", "--root", str(root), "-qa", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def as_versions(rpmdb: Mapping[str, Installed]) -> dict[str, str]:
    return {name: f"{item.version}-{item.release}" for name, item in rpmdb.items()}
