"""The lab's repository as real RPM packages and yum repositories (rpmbuild, createrepo_c).

Each build of an XCP-ng / XenServer lab's repository (lab/packages.py) is an empty
x86_64 RPM of the same name, version, release and summary, built once per machine into
a cache (`$XDG_CACHE_HOME/rollup/lab-rpms`) and linked into the lab's mirror directory,
laid out as XCP-ng's mirrors are, one directory per release and repository:

    <lab>/repo/rpms/8.3/base/       the release's base packages (xcp-ng-base)
    <lab>/repo/rpms/8.3/updates/    every update published since (xcp-ng-updates)

each with its yum metadata (createrepo_c). The lab's mirror (lab/yum_mirror.py) serves
the directory over HTTP, and every lab host's real dnf (lab/dnf_host.py) installs from
it into its own rpm database. The packages hold no files: what the lab tests is what
the package manager decides, not what a kernel package lays down.

Without these tools (a machine with no rpm, dnf or createrepo_c) the lab's hosts keep
their stand-in yum (lab/yum.py), which tests/lab/test_yum_vs_dnf.py holds against real
dnf on the same repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rollup.lab.dnf_host import SYSTEM_PATH
from rollup.lab.host_files import read_value, write_atomically
from rollup.lab.packages import Build, Repository

# The commands a lab host's real package manager needs, by the package that brings them
# (Debian's and Ubuntu's names).
TOOLS = {"rpmbuild": "rpm", "rpm": "rpm", "createrepo_c": "createrepo-c", "dnf": "dnf"}
# dnf-plugins-core's needs-restarting, where dnf's interpreter finds its plugins.
NEEDS_RESTARTING = "lib*/python3*/*-packages/dnf-plugins/needs_restarting.py"  # under /usr
MIRROR_DIR = "rpms"  # under the lab's repo/ directory
BASE, UPDATES = "base", "updates"
# Set to "shim" to keep the stand-in yum even where the real tools are installed.
PACKAGES_ENV = "ROLLUP_LAB_PACKAGES"
_SPEC = """Name: {name}
Version: {version}
Release: {release}
Summary: {summary}
License: GPLv2
%description
{summary}
%files
"""


def missing_tools() -> list[str]:
    """The packages to install for the lab's hosts to run real rpm and dnf ([]: none)."""
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool, path=SYSTEM_PATH) is None]
    if "dnf" not in missing and dnf_python() is None:
        missing.append("dnf")
    if next(Path("/usr").glob(NEEDS_RESTARTING), None) is None:
        missing.append("dnf-plugins-core")
    return sorted(set(missing))


def real_packages() -> bool:
    """Whether a new lab's XCP-ng / XenServer hosts run real rpm and dnf."""
    return os.environ.get(PACKAGES_ENV, "") != "shim" and not missing_tools()


def dnf_python() -> str | None:
    """The interpreter dnf runs with (its script's #! line): dnf's modules are its own."""
    dnf = shutil.which("dnf", path=SYSTEM_PATH)
    if dnf is None:
        return None
    try:
        with Path(dnf).open("rb") as script:
            first = script.readline().decode(errors="replace").strip()
    except OSError:
        return None
    interpreter = first.removeprefix("#!").split()[0] if first.startswith("#!") else ""
    return interpreter if interpreter and Path(interpreter).exists() else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rollup" / "lab-rpms"


def file_name(build: Build) -> str:
    return f"{build.rpm}.rpm"


def built(build: Build) -> Path:
    """The build's RPM in this machine's cache, built now if it is not there yet."""
    # The summary is in the key: two labs may publish the same NVR with other words.
    key = hashlib.sha256(f"{build.nvr}\0{build.summary}".encode()).hexdigest()[:16]
    path = cache_dir() / key / file_name(build)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rpmbuild-", dir=path.parent) as top:
        spec = Path(top) / "package.spec"
        spec.write_text(
            _SPEC.format(
                name=build.name, version=build.version, release=build.release,
                summary=build.summary or build.name,
            )
        )  # fmt: skip
        subprocess.run(
            ["rpmbuild", "-bb", "--quiet", "--target", "x86_64",
             "--define", f"_topdir {top}", str(spec)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        # Renamed into place: test workers building the same package race here.
        (Path(top) / "RPMS" / "x86_64" / file_name(build)).replace(path)
    return path


def mirror_dir(repository_file: Path) -> Path:
    return repository_file.parent / MIRROR_DIR


def repository_of(build: Build) -> str:
    return UPDATES if build.advisory else BASE


def refresh(repository: Repository) -> Path | None:
    """Bring the lab's mirror directory in step with its repository: every build's RPM in
    its release's base or updates repository, with fresh metadata. None when the
    repository has no file (a pool without disk) or is not of RPMs."""
    if repository.path is None or repository.distro != "rpm":
        return None
    top = mirror_dir(repository.path)
    stamp = top / ".serial"
    if read_value(stamp) == f"{repository.serial} {len(repository.builds)}":
        return top
    from concurrent.futures import ThreadPoolExecutor  # here: lab hosts' yum imports us

    builds = list(repository.builds)
    with ThreadPoolExecutor(max_workers=4) as pool:
        files = list(pool.map(built, builds))
    changed: set[Path] = set()
    for build, file in zip(builds, files, strict=True):
        directory = top / build.stream / repository_of(build)
        target = directory / file_name(build)
        if not target.exists():
            directory.mkdir(parents=True, exist_ok=True)
            _link(file, target)
            changed.add(directory)
    for directory in sorted(changed | _without_metadata(top)):
        subprocess.run(
            ["createrepo_c", "--quiet", "--update", str(directory)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    write_atomically(stamp, f"{repository.serial} {len(repository.builds)}\n")
    return top


def rpm_files(top: Path) -> dict[str, Path]:
    """Every RPM of the mirror, by name-version-release."""
    return {path.name.removesuffix(".x86_64.rpm"): path for path in top.glob("*/*/*.rpm")}


def _without_metadata(top: Path) -> set[Path]:
    return {d for d in top.glob("*/*") if d.is_dir() and not (d / "repodata").exists()}


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system than the cache's
        shutil.copy2(source, target)
