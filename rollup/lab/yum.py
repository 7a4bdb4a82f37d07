"""`yum`, `rpm` and `needs-restarting` as a lab host's SSH sessions see them.

Each lab host has these three first on its PATH (lab/hosts.py writes the scripts), so a
playbook written for a real XCP-ng host (playbooks/xcp-ng-update.yml) runs unchanged on
a lab host: `yum update` installs from the lab's one repository (lab/packages.py) into
the host's package database (lab/rpmdb.py), the same one the pool's own update calls
use. Only the subset those playbooks use is here:

  yum [-y] [-q] [--disablerepo=R] [--enablerepo=R] clean metadata|all
  yum ... check-update [PACKAGE...]      exit 100 when updates are pending, else 0
  yum ... update|upgrade [PACKAGE...]    PACKAGE: a name or name-version-release
  yum ... update --downloadonly          fetch them into yum's cache, install nothing
  rpm -q [--qf '%{INSTALLTIME}\\n'|'%{VERSION}-%{RELEASE}\\n'] PACKAGE...
  rpm -qa
  needs-restarting -r                    exit 1 when a core package changed since boot

Downloads take lab time (packages.MIRROR_BANDWIDTH, divided by the lab's speed) unless
the package is already in yum's cache, where `--downloadonly` puts it and an install
takes it from (as the pool's updater plugin does too).

The host's release is the one it runs, or the one a release upgrade installed
(etc/rollup-lab/installed-version, written by playbooks/lab-patch.yml): `yum update`
then installs that release's packages, as a yum-driven release upgrade does.

Install times are real times, and a host's boots are simulated: `rpm`'s INSTALLTIME is
shifted so that it is before this machine's boot time (/proc/stat btime) exactly when
the package was installed before the lab host's last boot, as a playbook comparing
the two expects.

A host with real packages (lab/dnf_host.py: where this machine has rpm, dnf and
createrepo_c, a new lab's XCP-ng and XenServer hosts do) runs none of the above: its
`yum` is Debian's dnf in the host's root, `needs-restarting` dnf-plugins-core's, both
at the lab host's boot time (lab/dnf_launch.py), and its `rpm` is rpm on the host's
database, with only INSTALLTIME moved onto this machine's boot as above. Where dnf 4
answers otherwise than XCP-ng's yum 3, the answer is dnf's (README: what the lab cannot
imitate): an argument that matches nothing exits 1, and dnf prints its own words.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rollup.lab import dnf_host, packages, rpm_builds, rpmdb
from rollup.lab.machine import patch_fault, release_stream
from rollup.lab.packages import Build, Installed, Repository

# What `needs-restarting -r` (yum-utils) counts as core: a change needs a reboot.
CORE = ("kernel", "glibc", "linux-firmware", "systemd", "udev", "openssl-libs", "gnutls", "dbus")
LOCK_ATTEMPTS = 10
LOCK_WAIT = 0.3  # real seconds between looks at yum's lock
REPOSITORIES = "xcp-ng-base xcp-ng-updates"


class Host:
    """The host this session runs on, from the environment its sshd gave it."""

    def __init__(self) -> None:
        root = os.environ.get("ROLLUP_LAB_ROOT")
        repo = os.environ.get("ROLLUP_LAB_REPO")
        if not root or not repo:
            raise SystemExit("yum: not a rollup lab host (ROLLUP_LAB_ROOT, ROLLUP_LAB_REPO)")
        self.root = Path(root)
        self.speed = float(os.environ.get("ROLLUP_LAB_SPEED") or 1.0)
        # A host of a lab with no repository yet has nothing to update from.
        self.repository = Repository.load(Path(repo)) if Path(repo).exists() else Repository()

    @property
    def stream(self) -> str:
        return release_stream(self.root)

    @property
    def real(self) -> bool:
        return dnf_host.is_real(self.root)

    def run_dnf(self, args: Sequence[str], needs_restarting: bool = False) -> int:
        """Become real dnf in this host's root, at its boot time (never returns)."""
        python = rpm_builds.dnf_python()
        if python is None:
            print(f"{Path(sys.argv[0]).name}: dnf is not installed here", file=sys.stderr)
            return 1
        boot_time = rpmdb.boot_time(self.root) or 0.0
        command = dnf_host.dnf_command(self.root, python, boot_time, self.stream, needs_restarting)
        dnf_host.after_boot(boot_time)
        sys.stdout.flush()
        os.execve(python, [*command, *args], dnf_host.environment(self.root))

    def installed(self) -> dict[str, Installed]:
        return rpmdb.read(self.root) or {}

    def failing_patch(self) -> str:
        """Why an install fails here now (the lab's fail_patch fault); "" if it does not."""
        return patch_fault(self.root, os.environ.get("ROLLUP_LAB_HOST", "this host"))

    def pending(self, specs: Sequence[str]) -> list[Build]:
        """What `update SPECS` installs; a spec that names no package is said, as yum
        says it ("No Match for argument", tests/lab/test_yum_vs_dnf.py)."""
        installed = self.installed()
        if not specs:
            return self.repository.pending(self.stream, installed)
        found = []
        for spec in specs:
            if self.repository.find(self.stream, spec) is None and spec not in installed:
                print(f"No Match for argument: {spec}")
            build = self.repository.update_for(self.stream, spec, installed)
            if build is not None:
                found.append(build)
        return found


def yum(args: Sequence[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    if not words:
        print("usage: yum [options] clean|check-update|update [PACKAGE...]", file=sys.stderr)
        return 1
    command, specs = words[0], words[1:]
    host = Host()
    if host.real:
        installs = command in ("update", "upgrade") and "--downloadonly" not in args
        if installs and (fault := host.failing_patch()):
            print(f"Error: {fault}", file=sys.stderr)
            return 1
        return host.run_dnf(args)
    if command == "clean":
        print(f"Cleaning repos: {REPOSITORIES}")
        return 0
    if command == "check-update":
        pending = host.pending(specs)
        for build in pending:
            print(f"{build.name}.x86_64    {build.version}-{build.release}    xcp-ng-updates")
        return 100 if pending else 0
    if command in ("update", "upgrade"):
        return _update(host, specs, download_only="--downloadonly" in args)
    print(f"yum (rollup lab): no such command: {command}", file=sys.stderr)
    return 1


def _update(host: Host, specs: Sequence[str], download_only: bool = False) -> int:
    if not download_only and (fault := host.failing_patch()):
        print(f"Error: {fault}", file=sys.stderr)
        return 1
    for attempt in range(LOCK_ATTEMPTS):
        with rpmdb.yum_lock(host.root) as taken:
            if taken:
                builds = host.pending(specs)
                fetched = _download(host, builds)
                if fetched and not download_only:
                    print("Downloading packages:")
                    for build in fetched:
                        print(
                            f"{build.rpm.removesuffix('.x86_64')}.x86_64.rpm"
                            f"  | {build.size / 2**20:.1f} MB"
                        )
                if download_only:
                    size = sum(b.size for b in fetched) / 2**20
                    print(
                        f'exiting because "Download Only" specified: {len(fetched)} packages'
                        f" downloaded ({size:.1f} MiB), {len(builds) - len(fetched)} in cache"
                    )
                    return 0
                return _install(host, builds)
        print(
            "Another app is currently holding the yum lock; waiting for it to exit...",
            file=sys.stderr,
        )
        if attempt < LOCK_ATTEMPTS - 1:
            time.sleep(LOCK_WAIT)
    print("Error: yum's lock is still held by another process: giving up", file=sys.stderr)
    return 1


def _download(host: Host, builds: Sequence[Build]) -> list[Build]:
    """Fetch what the cache lacks, taking the mirror's time; the builds it fetched."""
    cached = rpmdb.downloaded(host.root)
    fetched = [b for b in builds if b.nvr not in cached]
    time.sleep(packages.download_seconds(fetched, set()) / host.speed)
    rpmdb.set_downloaded(host.root, cached | {b.nvr for b in fetched})
    return fetched


def _install(host: Host, builds: Sequence[Build]) -> int:
    if not builds:
        print("No packages marked for update")
        return 0
    installed = host.installed()
    now = time.time()
    for build in builds:
        installed[build.name] = Installed(build.version, build.release, now)
    rpmdb.write(host.root, installed)
    rpmdb.set_downloaded(host.root, rpmdb.downloaded(host.root) - {b.nvr for b in builds})
    print("Updated:")
    for build in builds:
        print(f"  {build.name}.x86_64 0:{build.version}-{build.release}")
    print("\nComplete!")
    return 0


def rpm(args: Sequence[str]) -> int:
    host = Host()
    if host.real:
        return _real_rpm(host, args)
    fmt = "%{NAME}-%{VERSION}-%{RELEASE}\n"
    names: list[str] = []
    query_all = False
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg in ("--qf", "--queryformat"):
            fmt = items.pop(0) if items else fmt
        elif arg == "-qa":
            query_all = True
        elif not arg.startswith("-"):
            names.append(arg)
    installed = Host().installed()
    if query_all:
        names = sorted(installed)
    status = 0
    for name in names:
        have = installed.get(name)
        if have is None:
            print(f"package {name} is not installed")
            status = 1
            continue
        text = (
            fmt.replace("%{NAME}", name)
            .replace("%{VERSION}", have.version)
            .replace("%{RELEASE}", have.release)
            .replace("%{INSTALLTIME}", str(_install_time(have)))
            .replace("\\n", "\n")
        )
        sys.stdout.write(text)
    return status


def _install_time(item: Installed) -> int:
    return _on_machine_clock(item.at, Path(os.environ["ROLLUP_LAB_ROOT"]))


def _on_machine_clock(at: float, root: Path) -> int:
    """An install time, on the same side of this machine's boot as of the lab host's."""
    host_boot = rpmdb.boot_time(root) or 0.0
    machine_boot = _machine_boot()
    if at >= host_boot:  # a real host's boot is a whole second (dnf_host.boot_second)
        return int(max(at, machine_boot + 1))
    return int(min(at, machine_boot - 1))


_MARK = re.compile(r"@@installtime:(\d+)@@")


def _real_rpm(host: Host, args: Sequence[str]) -> int:
    """rpm on the host's database. A query format's %{INSTALLTIME} is marked, and moved
    onto this machine's clock as the stand-in's is: only that field changes."""
    items = list(args)
    for index, arg in enumerate(items[:-1]):
        if arg in ("--qf", "--queryformat"):
            items[index + 1] = items[index + 1].replace(
                "%{INSTALLTIME}", "@@installtime:%{INSTALLTIME}@@"
            )
    done = dnf_host.rpm(host.root, *items)
    sys.stdout.write(
        _MARK.sub(lambda m: str(_on_machine_clock(float(m.group(1)), host.root)), done.stdout)
    )
    sys.stderr.write(done.stderr)
    return done.returncode


def _machine_boot() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def needs_restarting(args: Sequence[str]) -> int:
    host = Host()
    if host.real:
        return host.run_dnf(["needs-restarting", *args], needs_restarting=True)
    if "-r" not in args:
        print("needs-restarting (rollup lab): only -r is supported", file=sys.stderr)
        return 2
    root = Path(os.environ["ROLLUP_LAB_ROOT"])
    now, booted = rpmdb.read(root) or {}, rpmdb.booted(root) or {}
    changed = [name for name in CORE if name in now and now[name] != booted.get(name)]
    if changed:
        print("Core libraries or services have been updated since boot-up:")
        for name in changed:
            print(f"  * {name}")
        print("\nReboot is required to fully utilize these updates.")
        return 1
    print("No core libraries or services have been updated since boot-up.")
    print("Reboot should not be necessary.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool({"yum": yum, "rpm": rpm, "needs-restarting": needs_restarting}, argv)


def run_tool(
    handlers: Mapping[str, Callable[[Sequence[str]], int]], argv: Sequence[str] | None
) -> int:
    """The tool a lab host's script runs, by the name it was called as (lab/hosts.py)."""
    argv = list(sys.argv if argv is None else argv)
    tool = Path(argv[0]).name
    if tool not in handlers:
        print(f"rollup lab tools: {tool} is not one of {', '.join(handlers)}", file=sys.stderr)
        return 2
    return handlers[tool](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
