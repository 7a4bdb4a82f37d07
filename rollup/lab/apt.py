"""`apt-get`, `apt`, `dpkg-query` and `ha-manager` as a Proxmox VE lab host's SSH sessions see them.

A lab host made with `LabMachine(..., tools="deb")` has these four first on its PATH
(lab/hosts.py writes the scripts), so a playbook written for a real Proxmox VE node
(playbooks/proxmox-update.yml) runs unchanged on a lab host. They are yum's (lab/yum.py)
over a Debian face: the same repository (lab/packages.py), the same package database
(lab/rpmdb.py), cache, lock, fail-patch fault and release stream. Only this subset is here:

  apt-get [-y] [-q|-qq] [-o OPTION=VALUE]... update
  apt-get [-y] [-q|-qq] [-o OPTION=VALUE]... upgrade|dist-upgrade|full-upgrade
  apt-get ... -d|--download-only upgrade|dist-upgrade|full-upgrade
                                         fetch into the cache, install nothing
  apt list --upgradable                  NAME/stable VERSION amd64 [upgradable from: OLD]
  dpkg-query -W|--show [-f FORMAT|-fFORMAT|--showformat=FORMAT] [PACKAGE...]
                                         FORMAT fields: ${Package} ${binary:Package}
                                         ${Version} ${Status} ${db:Status-Abbrev}
                                         ${Architecture}; escapes \\n \\t \\\\
  ha-manager crm-command node-maintenance enable|disable NODE
  ha-manager status

apt-get's other forms --yes, --assume-yes, --quiet, -q=N, --option X=Y, -oX=Y work too.
Errors exit as the real tools do: apt-get and apt 100, dpkg-query 1 (a package not
installed) or 2 (bad usage), ha-manager 255. A Debian version is the build's
"VERSION-RELEASE". An upgrade installs every pending build, including one of a package
not installed yet (listed without "[upgradable from: ...]").

Downloads take lab time exactly as yum's do, and the lock is yum's (standing in for
/var/lib/dpkg/lock-frontend). An upgrade that installed a kernel or Xen build writes
run/reboot-required and appends the packages to run/reboot-required.pkgs, as Debian's
update-notifier hook does; a lab host's boot empties its run/ as a tmpfs would.

ha-manager only queues: `crm-command` appends "node-maintenance enable NODE" to
etc/pve/ha/crm_commands, which the lab's cluster resource manager reads and applies;
`status` prints etc/pve/ha/manager_status.txt as the lab last wrote it.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rollup.lab import rpmdb
from rollup.lab.host_files import write_atomically
from rollup.lab.packages import GUIDANCE, Build, Installed
from rollup.lab.yum import LOCK_ATTEMPTS, LOCK_WAIT, Host, _download, run_tool

# Where the lab says its packages come from: its own mirror (lab/packages.py).
ARCHIVE = "http://mirror.rollup-lab.invalid/debian/pve bookworm/pve-no-subscription amd64"
LOCK = "/var/lib/dpkg/lock-frontend"
REBOOT_REQUIRED = Path("run/reboot-required")
REBOOT_REQUIRED_PKGS = Path("run/reboot-required.pkgs")
CRM_COMMANDS = Path("etc/pve/ha/crm_commands")
MANAGER_STATUS = Path("etc/pve/ha/manager_status.txt")
# The kinds whose build only takes effect at boot, by the lab's own guidance.
REBOOT_KINDS = frozenset(kind for kind, need in GUIDANCE.items() if need == "reboot_host")
UPGRADES = ("upgrade", "dist-upgrade", "full-upgrade")
HA_USAGE = "USAGE: ha-manager crm-command node-maintenance <enable|disable> <node>"
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def deb_version(item: Build | Installed) -> str:
    return f"{item.version}-{item.release}"


def _lab_root(tool: str) -> Path | None:
    root = os.environ.get("ROLLUP_LAB_ROOT")
    if not root:
        print(f"{tool}: not a rollup lab host (ROLLUP_LAB_ROOT is not set)", file=sys.stderr)
        return None
    return Path(root)


def _lab_host() -> Host | None:
    # yum's Host would exit naming yum: say which variables are missing as apt.
    if not os.environ.get("ROLLUP_LAB_ROOT") or not os.environ.get("ROLLUP_LAB_REPO"):
        print("E: not a rollup lab host (ROLLUP_LAB_ROOT, ROLLUP_LAB_REPO)", file=sys.stderr)
        return None
    return Host()


# -- apt-get ------------------------------------------------------------------------------


def apt_get(args: Sequence[str]) -> int:
    words: list[str] = []
    quiet = 0
    download_only = False
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg in ("-y", "--yes", "--assume-yes"):
            continue
        if arg in ("-q", "--quiet"):
            quiet = max(quiet, 1)
        elif arg == "-qq":
            quiet = 2
        elif arg.startswith("-q="):
            quiet = int(arg[3:]) if arg[3:].isdigit() else 1
        elif arg in ("-d", "--download-only"):
            download_only = True
        elif arg in ("-o", "--option"):
            # Dpkg and APT options change nothing the lab models: take them and go on.
            if not items or "=" not in items.pop(0):
                print(f"E: Option {arg} requires an argument of the form X=Y", file=sys.stderr)
                return 100
        elif arg.startswith("-o") and "=" in arg:
            continue
        elif arg.startswith("-"):
            print(
                f"E: Command line option '{arg}' is not understood by the rollup lab's apt-get",
                file=sys.stderr,
            )
            return 100
        else:
            words.append(arg)
    if not words:
        print("E: usage: apt-get [options] update|upgrade|dist-upgrade", file=sys.stderr)
        return 100
    command, rest = words[0], words[1:]
    if rest:
        print(f"E: The {command} command takes no arguments in the rollup lab", file=sys.stderr)
        return 100
    if command == "update":
        if quiet < 2:
            print(f"Hit:1 {ARCHIVE.rsplit(' ', 1)[0]} InRelease")
            print("Reading package lists... Done")
        return 0
    if command in UPGRADES:
        host = _lab_host()
        return 100 if host is None else _upgrade(host, download_only, quiet)
    print(f"E: Invalid operation {command}", file=sys.stderr)
    return 100


def _upgrade(host: Host, download_only: bool, quiet: int) -> int:
    if not download_only and (fault := host.failing_patch()):
        print(f"E: {fault}", file=sys.stderr)
        return 100
    say: Callable[[str], None] = (lambda _: None) if quiet >= 2 else print
    for attempt in range(LOCK_ATTEMPTS):
        with rpmdb.yum_lock(host.root) as taken:
            if taken:
                return _upgrade_locked(host, download_only, say)
        if attempt < LOCK_ATTEMPTS - 1:
            print(
                f"Waiting for cache lock: Could not get lock {LOCK}. "
                "It is held by another process...",
                file=sys.stderr,
            )
            time.sleep(LOCK_WAIT)
    print(
        f"E: Could not get lock {LOCK}. It is held by another process\n"
        f"E: Unable to acquire the dpkg frontend lock ({LOCK}), "
        "is another process using it?",
        file=sys.stderr,
    )
    return 100


def _upgrade_locked(host: Host, download_only: bool, say: Callable[[str], None]) -> int:
    installed = host.installed()
    builds = host.pending(())
    for step in ("Reading package lists", "Building dependency tree", "Reading state information"):
        say(f"{step}... Done")
    say("Calculating upgrade... Done")
    new = [b for b in builds if b.name not in installed]
    upgraded = [b for b in builds if b.name in installed]
    if new:
        say("The following NEW packages will be installed:")
        say("  " + " ".join(b.name for b in new))
    if upgraded:
        say("The following packages will be upgraded:")
        say("  " + " ".join(b.name for b in upgraded))
    say(f"{len(upgraded)} upgraded, {len(new)} newly installed, 0 to remove and 0 not upgraded.")
    if not builds:
        return 0
    fetched = _download(host, builds)
    total, to_get = sum(b.size for b in builds), sum(b.size for b in fetched)
    need = _si(to_get) if to_get == total else f"{_si(to_get)}/{_si(total)}"
    say(f"Need to get {need} of archives.")
    for number, build in enumerate(fetched, 1):
        say(f"Get:{number} {ARCHIVE} {build.name} amd64 {deb_version(build)} [{_si(build.size)}]")
    if fetched:
        say(f"Fetched {_si(to_get)}")
    if download_only:
        say(
            f"Download complete and in download only mode: {len(fetched)} packages"
            f" downloaded ({_si(to_get)}), {len(builds) - len(fetched)} in cache"
        )
        return 0
    now = time.time()
    for build in builds:
        have = installed.get(build.name)
        say(f"Preparing to unpack .../{build.name}_{deb_version(build)}_amd64.deb ...")
        over = f" over ({deb_version(have)})" if have else ""
        say(f"Unpacking {build.name} ({deb_version(build)}){over} ...")
        installed[build.name] = Installed(build.version, build.release, now)
    rpmdb.write(host.root, installed)
    rpmdb.set_downloaded(host.root, rpmdb.downloaded(host.root) - {b.nvr for b in builds})
    for build in builds:
        say(f"Setting up {build.name} ({deb_version(build)}) ...")
    _note_reboot(host.root, [b.name for b in builds if b.kind in REBOOT_KINDS])
    return 0


def _note_reboot(root: Path, names: Sequence[str]) -> None:
    """What update-notifier-common's hook leaves for a package that needs a reboot."""
    if not names:
        return
    write_atomically(root / REBOOT_REQUIRED, "*** System restart required ***\n")
    pkgs = root / REBOOT_REQUIRED_PKGS
    listed = pkgs.read_text().splitlines() if pkgs.exists() else []
    write_atomically(pkgs, "".join(f"{n}\n" for n in dict.fromkeys([*listed, *names])))


def _si(size: int) -> str:
    """A size as apt writes it: decimal units."""
    if size < 1000:
        return f"{size} B"
    if size < 1000**2:
        return f"{size / 1000:,.0f} kB"
    return f"{size / 1000**2:,.1f} MB"


# -- apt ----------------------------------------------------------------------------------


def apt(args: Sequence[str]) -> int:
    if list(args) != ["list", "--upgradable"]:
        print(
            f"E: Invalid operation {' '.join(args) or '(none)'}: the rollup lab's apt"
            " knows only `apt list --upgradable`",
            file=sys.stderr,
        )
        return 100
    host = _lab_host()
    if host is None:
        return 100
    if not sys.stdout.isatty():
        # As the real apt warns a script that parses its output.
        warning = "WARNING: apt does not have a stable CLI interface. Use with caution in scripts."
        print(f"\n{warning}\n", file=sys.stderr)
    installed = host.installed()
    print("Listing...")
    for build in host.pending(()):
        have = installed.get(build.name)
        since = f" [upgradable from: {deb_version(have)}]" if have else ""
        print(f"{build.name}/stable {deb_version(build)} amd64{since}")
    return 0


# -- dpkg-query ---------------------------------------------------------------------------


def dpkg_query(args: Sequence[str]) -> int:
    fmt = "${binary:Package}\\t${Version}\\n"
    show = False
    names: list[str] = []
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg in ("-W", "--show"):
            show = True
        elif arg in ("-f", "--showformat") and items:
            fmt = items.pop(0)
        elif arg.startswith("--showformat="):
            fmt = arg.split("=", 1)[1]
        elif arg.startswith("-f") and len(arg) > 2:
            # `-f='${Version}'` reaches us as -f=${Version}: dpkg drops the "=" too.
            fmt = arg[2:].removeprefix("=")
        elif arg.startswith("-"):
            print(f"dpkg-query: error: unknown option {arg}", file=sys.stderr)
            return 2
        else:
            names.append(arg)
    if not show:
        print("dpkg-query: error: need an action option (the rollup lab has -W)", file=sys.stderr)
        return 2
    root = _lab_root("dpkg-query")
    if root is None:
        return 2
    installed = rpmdb.read(root) or {}
    status = 0
    for name in names or sorted(installed):
        have = installed.get(name)
        if have is None:
            print(f"dpkg-query: no packages found matching {name}", file=sys.stderr)
            status = 1
            continue
        sys.stdout.write(_format(fmt, name, have))
    return status


def _format(fmt: str, name: str, have: Installed) -> str:
    fields = {
        "Package": name,
        "binary:Package": name,
        "Version": deb_version(have),
        "Status": "install ok installed",
        "db:Status-Abbrev": "ii ",
        "Architecture": "amd64",
    }
    text = re.sub(r"\$\{([^}]*)\}", lambda m: fields.get(m.group(1), ""), fmt)
    escapes = {"n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), text)


# -- ha-manager ---------------------------------------------------------------------------


def ha_manager(args: Sequence[str]) -> int:
    words = list(args)
    if not words:
        print(HA_USAGE, file=sys.stderr)
        return 255
    if words == ["status"]:
        root = _lab_root("ha-manager")
        if root is None:
            return 255
        status = root / MANAGER_STATUS
        print(status.read_text().rstrip("\n") if status.exists() else "quorum OK")
        return 0
    if words[:1] == ["crm-command"]:
        if (
            len(words) != 4
            or words[1] != "node-maintenance"
            or words[2] not in ("enable", "disable")
            or not _NODE.match(words[3])
        ):
            print(f"400 wrong arguments\n{HA_USAGE}", file=sys.stderr)
            return 255
        root = _lab_root("ha-manager")
        if root is None:
            return 255
        path = root / CRM_COMMANDS
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write with O_APPEND under the lock the lab's CRM empties the file under:
        # every node appends to the one shared file, and no command is lost.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, " ".join(words[1:]).encode() + b"\n")
        finally:
            os.close(fd)
        return 0
    print(
        f"400 unknown command 'ha-manager {' '.join(words)}'"
        " (the rollup lab has crm-command node-maintenance and status)",
        file=sys.stderr,
    )
    return 255


def main(argv: Sequence[str] | None = None) -> int:
    handlers = {"apt-get": apt_get, "apt": apt, "dpkg-query": dpkg_query, "ha-manager": ha_manager}
    return run_tool(handlers, argv)


if __name__ == "__main__":
    sys.exit(main())
