"""A lab host's real package manager: its own rpm database and dnf, in its own root.

A host made with real packages (lab/rpm_builds.py `real_packages`) has, under its root:

    root/.rpmmacros               %_dbpath /var/lib/rpm (read through HOME, see below)
    var/lib/rpm/rpmdb.sqlite      its rpm database (rpm --root ROOT --initdb)
    etc/yum.conf                  dnf's config: cache, logs and repositories in the root
    etc/yum.repos.d/xcp-ng.repo   xcp-ng-base and xcp-ng-updates enabled, testing and
                                  candidates disabled, as a stock XCP-ng 8.3 host has
    var/cache/yum/                dnf's metadata and package cache (--downloadonly)
    var/lib/dnf/rpmdb_lock.pid    dnf's rpmdb lock, which another dnf waits on

Debian's rpm puts its database in ~/.rpmdb (/usr/lib/rpm/macros), relative to --root,
and reads ~/.rpmmacros: every rpm and dnf of a host runs with HOME set to its root
user's home, whose .rpmmacros moves the database to /var/lib/rpm, as on XCP-ng.

The packages come from the lab's mirror (lab/yum_mirror.py). The pool reads what is
installed with `rpm -qa`, cached until the database changes; it writes what its own
update calls install (apply_updates, the installer) with `rpm -U --justdb`: the same
database the host's dnf installs into.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from rollup import bundled
from rollup.lab.host_files import write_atomically
from rollup.lab.packages import Installed, Rpmdb, rpm_key

RPMDB_FILE = Path("var/lib/rpm/rpmdb.sqlite")
HOME = Path("root")
YUM_CONF = Path("etc/yum.conf")
REPO_FILE = Path("etc/yum.repos.d/xcp-ng.repo")
CACHE = Path("var/cache/yum")
# dnf/lock.py build_rpmdb_lock: a pid file in dnf's persistdir (/var/lib/dnf in the root).
DNF_LOCK = Path("var/lib/dnf/rpmdb_lock.pid")
# dnf looks at a held lock once a second, real time (dnf/lock.py ProcessLock.__enter__).
LOCK_LOOK = 1.0
# A lab host's repositories: base and updates enabled, the ones updater.py's
# DEFAULT_REPOS starts from (xcp-ng/xcp-ng-xapi-plugins SOURCES/etc/xapi.d/plugins/
# updater.py); testing and candidates present but disabled, for `repos` to name.
REPOSITORIES = (
    ("xcp-ng-base", "base", True),
    ("xcp-ng-updates", "updates", True),
    ("xcp-ng-testing", "testing", False),
    ("xcp-ng-candidates", "candidates", False),
)
_QUERY = "%{NAME} %{VERSION} %{RELEASE} %{INSTALLTIME}\\n"
_YUM_CONF = """[main]
cachedir=/var/cache/yum
logdir=/var/log
persistdir=/var/lib/dnf
reposdir=/etc/yum.repos.d
keepcache=0
gpgcheck=0
install_weak_deps=0
# yum 3 (XCP-ng) fetches one package after another.
max_parallel_downloads=1
"""


ENABLED_REPOS = tuple(name for name, _, enabled in REPOSITORIES if enabled)


def is_real(root: Path) -> bool:
    return (root / RPMDB_FILE).exists()


def init(root: Path, mirror_url: str) -> None:
    """A new root with an empty rpm database and dnf's config for the lab's mirror."""
    write_atomically(root / HOME / ".rpmmacros", "%_dbpath /var/lib/rpm\n")
    write_atomically(root / YUM_CONF, _YUM_CONF)
    set_mirror(root, mirror_url)
    (root / "var/lib/rpm").mkdir(parents=True, exist_ok=True)
    rpm(root, "--initdb")


def set_mirror(root: Path, mirror_url: str) -> None:
    """Point the host's repositories at the mirror (its port is new at every lab start).
    metadata_expire=0: the pool's check_update reads the lab's repository live, so a
    dnf that installs after it must not answer from older metadata."""
    sections = []
    for name, directory, enabled in REPOSITORIES:
        sections.append(
            f"[{name}]\nname=XCP-ng {directory} (rollup lab)\n"
            f"baseurl={mirror_url.rstrip('/')}/$releasever/{directory}/\n"
            f"enabled={int(enabled)}\ngpgcheck=0\nmetadata_expire=0\n"
            "skip_if_unavailable=0\n"
        )
    write_atomically(root / REPO_FILE, "\n".join(sections))


# This machine's own tools: a lab host's PATH starts with its stand-ins (`rpm` among them).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(root / HOME), "LC_ALL": "C.UTF-8", "PATH": SYSTEM_PATH}


def rpm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [shutil.which("rpm", path=SYSTEM_PATH) or "rpm", "--root", str(root), *args],
        capture_output=True, text=True, env=environment(root), timeout=120,
    )  # fmt: skip
    if done.returncode != 0 and args and args[0] in ("--initdb", "-U", "-e"):
        raise RuntimeError(f"rpm {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done


def boot_second(root: Path) -> float:
    """When a host with this root boots: a whole second after its last install.

    rpm keeps install times in whole seconds, and needs-restarting counts a package
    installed after the boot when its INSTALLTIME is greater than the boot time (the
    second before the boot's is passed, see dnf_command). So a boot is a whole second:
    every package installed before it has an earlier second, and every install after it
    must have this second or a later one. A lab host may boot within the second of an
    install (a fast lab): its boot is then the next second, and an install that comes
    before that second waits for it (after_boot)."""
    newest = max((item.at for item in read(root).values()), default=0.0)
    return float(max(math.floor(time.time()), math.floor(newest) + 1))


def after_boot(boot_time: float) -> None:
    """Wait for the host's boot second, if it is still to come (see boot_second)."""
    early = boot_time - time.time()
    if early > 0:
        time.sleep(early)


def dnf_command(
    root: Path, python: str, boot_time: float, release: str, needs_restarting: bool = False
) -> list[str]:
    """The start of a dnf command line for the host: its root, config and release.
    needs-restarting is dnf-plugins-core's; no other plugin of this machine applies (and
    loading none saves a lab host's every yum a few hundredths of a second)."""
    plugins = ["--disableplugin=*", "--enableplugin=needs_restarting"]
    return [
        python, str(bundled.path("lab/dnf_launch.py")), f"{math.floor(boot_time) - 1}",
        f"--installroot={root}", f"--config={root / YUM_CONF}", f"--releasever={release}",
        *(plugins if needs_restarting else ["--noplugins"]),
    ]  # fmt: skip


_cache: dict[Path, tuple[tuple[int, ...], Rpmdb]] = {}
_cache_lock = threading.Lock()


def read(root: Path) -> Rpmdb:
    """What the host's rpm database holds (rpm -qa), cached until the database changes."""
    stamp = _stamp(root)
    with _cache_lock:
        known = _cache.get(root)
    if known is not None and known[0] == stamp:
        return dict(known[1])
    done = rpm(root, "-qa", "--qf", _QUERY)
    found: Rpmdb = {}
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) != 4:
            continue
        # The kernel is install-only (dnf's and yum's installonlypkgs): several versions
        # stay installed, and the newest is the one the host boots.
        have = found.get(words[0])
        if have is None or rpm_key(words[1], words[2]) > rpm_key(have.version, have.release):
            found[words[0]] = Installed(words[1], words[2], float(words[3]))
    with _cache_lock:
        _cache[root] = (stamp, found)
    return dict(found)


def write(
    root: Path, wanted: Mapping[str, Installed], files: Mapping[str, Path], boot_time: float
) -> None:
    """Make the database hold `wanted` (what the pool's own calls installed): each
    changed package from its RPM in the mirror (`files`, by name-version-release)."""
    after_boot(boot_time)
    have = read(root)
    changed = [
        f"{name}-{item.version}-{item.release}"
        for name, item in sorted(wanted.items())
        if (have.get(name) is None)
        or (have[name].version, have[name].release) != (item.version, item.release)
    ]
    gone = sorted(set(have) - set(wanted))
    missing = [nvr for nvr in changed if nvr not in files]
    if missing:
        raise RuntimeError(f"the lab's mirror has no RPM of {', '.join(missing)}")
    if changed:
        rpm(root, "-U", "--justdb", "--nodeps", "--oldpackage", "--replacepkgs",
            *(str(files[nvr]) for nvr in changed))  # fmt: skip
    if gone:
        rpm(root, "-e", "--justdb", "--nodeps", *gone)


def cached_packages(root: Path) -> dict[str, Path]:
    """The RPMs in dnf's package cache (what --downloadonly left), by name-version-release."""
    return {
        path.name.removesuffix(".x86_64.rpm"): path
        for path in (root / CACHE).glob("*/packages/*.rpm")
    }


def hold_lock(root: Path) -> None:
    """Hold dnf's rpmdb lock as another process would: its pid (this one's, alive) in the
    lock file. dnf/lock.py ProcessLock waits, "Waiting for process with pid N to
    finish.", while that process lives and the file names it."""
    write_atomically(root / DNF_LOCK, str(os.getpid()))


def release_lock(root: Path) -> None:
    if lock_holder(root) == os.getpid():
        (root / DNF_LOCK).unlink(missing_ok=True)


def lock_holder(root: Path) -> int | None:
    """The live process holding dnf's rpmdb lock, if one does."""
    try:
        pid = int((root / DNF_LOCK).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid and Path(f"/proc/{pid}").exists() else None


def _stamp(root: Path) -> tuple[int, ...]:
    stamps = []
    for suffix in ("", "-wal"):
        try:
            info = (root / (str(RPMDB_FILE) + suffix)).stat()
            stamps += [info.st_mtime_ns, info.st_size]
        except FileNotFoundError:
            stamps += [0, 0]
    return tuple(stamps)


def run_dnf(
    root: Path, python: str, boot_time: float, release: str, args: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    after_boot(boot_time)
    return subprocess.run(
        [*dnf_command(root, python, boot_time, release), *args],
        capture_output=True, text=True, env=environment(root), timeout=3600,
    )  # fmt: skip
