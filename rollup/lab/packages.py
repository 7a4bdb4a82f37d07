"""The lab's package repository and each host's installed packages: what yum knows.

One repository per lab, a JSON file in the lab's directory, read by everything that
installs or lists updates: the pool's `updater.py` plugin (XCP-ng), its `/updates`
and `host.apply_updates` (XenServer), and the `yum` of the hosts' SSH sessions
(lab/yum.py), so every path installs from the same place. `rollup lab publish` adds
builds to it while the lab runs.

A repository holds builds of a few packages per release stream ("8.3"): the stream's
base (what its installer lays down) and the updates published since, each tagged with
the advisory that shipped it. A host runs the stream of its product version; what is
pending on it is, per package of its stream, the newest build newer than the installed
one. Which kind of package a build is decides what installing it demands, as xapi's
guidances say it: a kernel or Xen build a reboot (unless it comes as a livepatch), the
toolstack a toolstack restart, QEMU a restart of the VMs' device models, guest firmware
a restart of the VMs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rollup.lab.host_files import write_atomically

Kind = Literal["kernel", "xen", "xapi", "qemu", "firmware", "userspace"]
KINDS: tuple[Kind, ...] = ("kernel", "xen", "xapi", "qemu", "firmware", "userspace")

# One package per kind, named as on an XCP-ng host, with its base version per stream.
PACKAGES: dict[Kind, tuple[str, str]] = {
    "kernel": ("kernel", "4.19.19"),
    "xen": ("xen-hypervisor", "4.17.5"),
    "xapi": ("xapi-core", "25.6.0"),
    "qemu": ("qemu", "4.2.1"),
    "firmware": ("edk2", "20220801"),
    "userspace": ("curl", "8.4.0"),
}
# The same kinds on a Proxmox VE host (Debian packages): what reboots it, what restarts
# its API daemons, its QEMU, its guests' firmware.
DEB_PACKAGES: dict[Kind, tuple[str, str]] = {
    "kernel": ("proxmox-kernel-6.8", "6.8.12"),
    "xen": ("pve-firmware", "3.13"),
    "xapi": ("pve-manager", "8.3.0"),
    "qemu": ("pve-qemu-kvm", "9.0.2"),
    "firmware": ("pve-edk2-firmware", "4.2023.08"),
    "userspace": ("curl", "7.88.1"),
}
SUMMARIES: dict[Kind, str] = {
    "kernel": "dom0 kernel: security fixes",
    "xen": "Xen hypervisor: XSA fixes",
    "xapi": "toolstack: bug fixes",
    "qemu": "device model: security fixes",
    "firmware": "UEFI firmware for guests",
    "userspace": "curl: security fixes",
}
# xapi's update_guidances, by what a kind of build needs once installed.
GUIDANCE: dict[Kind, str] = {
    "kernel": "reboot_host",
    "xen": "reboot_host",
    "xapi": "restart_toolstack",
    "qemu": "restart_device_model",
    "firmware": "restart_vm",
}
DEB_SUMMARIES: dict[Kind, str] = {
    "kernel": "Proxmox kernel: security fixes",
    "xen": "firmware for the node's devices",
    "xapi": "Proxmox VE API and tools: bug fixes",
    "qemu": "QEMU: security fixes",
    "firmware": "UEFI firmware for guests",
    "userspace": "curl: security fixes",
}
LIVEPATCH_FAILURE = "reboot_host_on_livepatch_failure"
REPOSITORY_FILE = "repository.json"
FORMAT = 1


@dataclass(frozen=True)
class Build:
    name: str
    version: str
    release: str
    kind: Kind
    stream: str  # the release it belongs to: "8.3"
    advisory: str = ""  # "" for the stream's base
    summary: str = ""
    severity: str = "None"  # "High" or "None", as XenServer's updateinfo says
    size: int = 0  # bytes to download
    livepatch: bool = False  # XenServer can apply it without a reboot
    serial: int = 0  # the publish that added it (0: the base)

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version}-{self.release}"

    @property
    def rpm(self) -> str:
        """The full package name XenServer's /updates lists under RPMS."""
        return f"{self.nvr}.x86_64"

    def newer_than(self, version: str, release: str) -> bool:
        return rpm_key(self.version, self.release) > rpm_key(version, release)


def rpm_key(version: str, release: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as rpm does, near enough: digit runs by value, above letter runs."""
    key: list[tuple[int, int | str]] = []
    for text in (version, release):
        for run in re.findall(r"\d+|[A-Za-z]+", text):
            key.append((1, int(run)) if run.isdigit() else (0, run))
        key.append((-1, ""))  # version ends before release starts
    return tuple(key)


def stream_of(product_version: str) -> str:
    """The release stream a product version runs: "8.3.0" → "8.3"."""
    return ".".join(product_version.split(".")[:2])


@dataclass(frozen=True)
class Installed:
    version: str
    release: str
    at: float  # when it was installed (real time, seconds since the epoch)


Rpmdb = dict[str, Installed]


@dataclass
class Repository:
    """The builds published so far; `path` None keeps it in memory (a pool without disk)."""

    builds: list[Build] = field(default_factory=list)
    serial: int = 0  # bumped by each publish
    path: Path | None = None
    home: str = ""  # the stream the lab's hosts ran when it started: where publish adds
    distro: str = "rpm"  # "rpm" (XCP-ng, XenServer) or "deb" (Proxmox VE): package names
    _read_at: float = 0.0  # the file's mtime when last read or written

    # -- reading ------------------------------------------------------------------------

    def stream(self, stream: str) -> list[Build]:
        return [build for build in self.builds if build.stream == stream]

    def base(self, stream: str) -> list[Build]:
        return [build for build in self.stream(stream) if not build.advisory]

    def latest(self, stream: str) -> dict[str, Build]:
        """The newest build of each package of `stream`."""
        newest: dict[str, Build] = {}
        for build in self.stream(stream):
            known = newest.get(build.name)
            if known is None or build.newer_than(known.version, known.release):
                newest[build.name] = build
        return newest

    def pending(self, stream: str, installed: Mapping[str, Installed]) -> list[Build]:
        """What `yum check-update` lists: per package the newest build newer than installed."""
        found = []
        for name, build in sorted(self.latest(stream).items()):
            have = installed.get(name)
            if have is None or build.newer_than(have.version, have.release):
                found.append(build)
        return found

    def find(self, stream: str, spec: str) -> Build | None:
        """What `yum update SPEC` installs: the build `spec` names in full (name-version-
        release), or the newest of package `spec`."""
        exact = [b for b in self.stream(stream) if spec in (b.nvr, b.rpm)]
        return exact[0] if exact else self.latest(stream).get(spec)

    def update_for(
        self, stream: str, spec: str, installed: Mapping[str, Installed]
    ) -> Build | None:
        """What `yum update SPEC` installs: the build `spec` names, if newer than the
        installed one (None: nothing, whether it names no package or an installed one)."""
        build = self.find(stream, spec)
        have = installed.get(build.name) if build else None
        if build is not None and (have is None or build.newer_than(have.version, have.release)):
            return build
        return None

    def as_of(self, serial: int) -> Repository:
        """The repository as a mirror synced when it was at `serial` holds it."""
        builds = [build for build in self.builds if build.serial <= serial]
        return Repository(builds=builds, serial=serial, home=self.home, distro=self.distro)

    def added_since(self, serial: int) -> list[Build]:
        return [build for build in self.builds if build.serial > serial]

    def hash(self) -> str:
        """What XenServer's /updates calls the updateinfo hash: changes with every publish."""
        text = json.dumps([asdict(b) for b in self.builds], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    # -- writing ------------------------------------------------------------------------

    def publish(
        self, kinds: Iterable[Kind], stream: str, livepatch: bool = False, minor: bool = False
    ) -> list[Build]:
        """A new build of each kind's package on `stream`, one advisory for them all;
        `minor`: a new minor version (25.6.0 → 25.7.0), not only a new release."""
        self.serial += 1
        prefix = "PVE" if self.distro == "deb" else "XSU"
        advisory = f"{prefix}-{stream.replace('.', '')}-{self.serial:04d}"
        added = []
        for kind in dict.fromkeys(kinds):
            name, base = package_names(self.distro)[kind]
            current = self.latest(stream).get(name)
            version = current.version if current else base
            release = _next_release(current.release if current else "1", stream, self.distro)
            if minor:
                version, release = _next_minor(version), _next_release("0", stream, self.distro)
            build = Build(
                name=name,
                version=version,
                release=release,
                kind=kind,
                stream=stream,
                advisory=advisory,
                summary=(DEB_SUMMARIES if self.distro == "deb" else SUMMARIES)[kind],
                severity="High" if kind in ("kernel", "xen", "qemu", "userspace") else "None",
                size=size_of(kind),
                livepatch=livepatch and kind in ("kernel", "xen"),
                serial=self.serial,
            )
            self.builds.append(build)
            added.append(build)
        self.save()
        return added

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "format": FORMAT,
            "serial": self.serial,
            "home": self.home,
            "distro": self.distro,
            "builds": [asdict(b) for b in self.builds],
        }
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n", 0o644)
        self._read_at = self.path.stat().st_mtime

    @classmethod
    def load(cls, path: Path) -> Repository:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a format-{FORMAT} lab repository")
        builds = [Build(**build) for build in data["builds"]]
        return cls(
            builds=builds,
            serial=int(data["serial"]),
            path=path,
            home=str(data.get("home", "")),
            distro=str(data.get("distro", "rpm")),
            _read_at=path.stat().st_mtime,
        )

    def reload(self) -> None:
        """Read the file again if it changed: `rollup lab publish` may have added builds."""
        if self.path is None:
            return
        try:
            changed = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if changed == self._read_at:
            return
        fresh = Repository.load(self.path)
        self.builds, self.serial, self._read_at = fresh.builds, fresh.serial, fresh._read_at


def package_names(distro: str) -> dict[Kind, tuple[str, str]]:
    """Each kind's package name and base version, as the distribution calls them."""
    return DEB_PACKAGES if distro == "deb" else PACKAGES


def _next_minor(version: str) -> str:
    parts = version.split(".")
    if len(parts) < 2 or not parts[1].isdigit():
        return f"{version}.1"
    return ".".join([parts[0], str(int(parts[1]) + 1), *["0" for _ in parts[2:]]])


def _next_release(release: str, stream: str, distro: str = "rpm") -> str:
    head = release.split(".", 1)[0]
    number = int(head) + 1 if head.isdigit() else 2
    return str(number) if distro == "deb" else f"{number}.xcpng{stream}"


# How fast a lab host fetches packages: a distant mirror, in bytes per lab second.
MIRROR_BANDWIDTH = 4 * 2**20


def download_seconds(builds: Iterable[Build], cached: set[str]) -> float:
    """Lab seconds to fetch the builds yum's cache does not hold yet."""
    return sum(b.size for b in builds if b.nvr not in cached) / MIRROR_BANDWIDTH


# yum resolving and running the RPM transaction, scriptlets included: what makes an
# install last minutes (Xen Orchestra warns "this step can last >15 minutes").
TRANSACTION_SECONDS = 45.0
PACKAGE_SECONDS = 10.0


def install_seconds(count: int) -> float:
    """Lab seconds yum takes to install `count` packages once they are downloaded."""
    return TRANSACTION_SECONDS + PACKAGE_SECONDS * count if count else 0.0


def size_of(kind: Kind) -> int:
    return {"kernel": 31, "xen": 5, "xapi": 18, "qemu": 9, "firmware": 3, "userspace": 2}[
        kind
    ] * 2**20


def guidance(builds: Iterable[Build], livepatch_allowed: bool = True) -> dict[str, list[str]]:
    """What installing `builds` demands, as xapi's guidance lists (snake_case names).

    A reboot makes the toolstack and device-model restarts moot (the host is empty and
    starts afresh); a livepatch build demands nothing unless its livepatch fails.
    """
    builds = list(builds)
    needs = {
        GUIDANCE[b.kind]
        for b in builds
        if b.kind in GUIDANCE and not (b.livepatch and livepatch_allowed)
    }
    mandatory = []
    if "reboot_host" in needs:
        mandatory.append("reboot_host")
    else:
        mandatory += [g for g in ("restart_toolstack", "restart_device_model") if g in needs]
    if "restart_vm" in needs:
        mandatory.append("restart_vm")
    lives = [b for b in builds if b.livepatch and livepatch_allowed]
    recommended = [LIVEPATCH_FAILURE] if lives else []
    return {
        "mandatory": mandatory,
        "recommended": recommended,
        "full": [*mandatory, *recommended],
        "livepatch": recommended,
    }


def rpmdb_to_json(rpmdb: Mapping[str, Installed]) -> str:
    return json.dumps({name: asdict(item) for name, item in sorted(rpmdb.items())}, indent=1)


def rpmdb_from_json(text: str) -> Rpmdb:
    data: dict[str, Any] = json.loads(text)
    return {name: Installed(**item) for name, item in data.items()}
