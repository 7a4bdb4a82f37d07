"""A running libvirt lab: real libvirtd hosts, real QEMU guests, real live migration.

`rollup lab up --libvirt` runs one in the foreground; tests start one in their own
process (so it outlives a controller they kill). It writes an Ansible inventory with
`rollup_driver: libvirt`, each host's `rollup_libvirt_uri` and SSH settings, and the
lab's patch (playbooks/lab-patch.yml, which installs a version into the host's root: the
host boots it at its next reboot and reports it as VERSION_ID in etc/os-release).

A host's `reboot` (over SSH) leaves a request in its root; a watcher thread here reboots
the host (lab/libvirt/hosts.py), since a host cannot restart its own sshd from inside
one of its sessions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rollup import bundled
from rollup.errors import BadInput
from rollup.lab.hosts import loopback_address
from rollup.lab.libvirt.guest import domain_xml, last_count, write_kernel
from rollup.lab.libvirt.hosts import LIBVIRTD, LibvirtLabHost
from rollup.lab.reaper import Reaper
from rollup.lab.sshd import SSHD
from rollup.remote import processes

INITIAL_VERSION = "12.4"
TARGET_VERSION = "12.5"  # what the lab's patch installs unless told otherwise
GROUP = "libvirt_lab"
QEMU = "/usr/bin/qemu-system-x86_64"
PACKAGES = (
    "qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
    " libvirt-dev openssh-server"
)


def missing() -> str | None:
    """What this machine lacks to run the lab, as one line with the fix; None if nothing."""
    if os.geteuid() != 0:
        return (
            "rollup lab up --libvirt needs root: it runs a libvirtd per host in its own"
            " mount namespace; run it as root"
        )
    lacking = [
        path for path in (LIBVIRTD, QEMU, str(SSHD), "/usr/bin/unshare") if not Path(path).exists()
    ]
    if lacking:
        return (
            f"{', '.join(lacking)} not installed: apt-get install -y --no-install-recommends"
            f" {PACKAGES}"
        )
    if importlib.util.find_spec("libvirt") is None:
        return (
            "the libvirt Python binding is missing: apt-get install -y libvirt-dev &&"
            " pip install libvirt-python==$(pkg-config --modversion libvirt)"
        )
    return None


def ensure_qemu_user() -> None:
    """libvirtd refuses to start without this user (checked before qemu.conf is read)."""
    import grp
    import pwd
    import subprocess

    try:
        pwd.getpwnam("libvirt-qemu")
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        # What libvirt-daemon-system's postinst does; that package drags in systemd.
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu"],
            check=True,
            capture_output=True,
        )  # fmt: skip


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    home: str  # the host it was started on


class LibvirtLab:
    def __init__(
        self, hosts: dict[str, LibvirtLabHost], guests: list[Guest], directory: Path
    ) -> None:
        self.hosts = hosts
        self.guests = guests
        self.directory = directory
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="libvirt-lab", daemon=True)
        self.reboots: list[str] = []  # host names, in the order they rebooted
        self._reaper: Reaper | None = None

    @classmethod
    def start(
        cls, hosts: int, vms: int, directory: Path, network: str = "127.0.20.0"
    ) -> LibvirtLab:
        problem = missing()
        if problem:
            raise BadInput(problem)
        ensure_qemu_user()
        directory = directory.resolve()
        prefix = _prefix(network)
        reaper = Reaper.start(directory)  # from here on, nothing it starts outlives us
        shutil.rmtree(directory / "hosts", ignore_errors=True)
        directory.chmod(0o700)
        started: dict[str, LibvirtLabHost] = {}
        lab = cls(started, [], directory)
        lab._reaper = reaper
        try:
            for index in range(1, hosts + 1):
                name = f"h{index}"
                host = LibvirtLabHost(name, directory, loopback_address(index, prefix))
                started[name] = host
                host.power_on(INITIAL_VERSION)
            lab.guests = lab._start_guests(vms, write_kernel(directory / "guest" / "counter.bin"))
        except BaseException:
            lab.stop()
            raise
        lab.write_inventory(directory / "inventory.yml")
        lab._watcher.start()
        return lab

    def _start_guests(self, count: int, kernel: Path) -> list[Guest]:
        """Round-robin over the hosts, each host's guests started in its own thread: a
        fresh daemon's first guest takes seconds while libvirt probes QEMU."""
        names = list(self.hosts)
        homes = {f"vm{i}": names[(i - 1) % len(names)] for i in range(1, count + 1)}
        with ThreadPoolExecutor(len(names)) as pool:
            started = pool.map(
                lambda host: self._start_on(
                    host, [g for g, h in homes.items() if h == host], kernel
                ),
                names,
            )
            found = {guest.name: guest for batch in started for guest in batch}
        return [found[name] for name in homes]

    def _start_on(self, host: str, guests: list[str], kernel: Path) -> list[Guest]:
        import libvirt

        conn = libvirt.open(self.hosts[host].uri)
        try:
            started = []
            for name in guests:
                domain = conn.defineXML(domain_xml(name, kernel))
                domain.create()
                started.append(Guest(name, domain.UUIDString(), host))
            return started
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join()
        for host in self.hosts.values():
            host.close()
        # Guests of a host whose daemon never told us its namespace (a failed start).
        kernel = str(self.directory / "guest" / "counter.bin")
        processes.kill_tree(set(), also=lambda: processes.with_cmdline(kernel))
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for host in self.hosts.values():
                if host.reboot_requested() and not self._stop.is_set():
                    host.reboot()
                    self.reboots.append(host.name)

    # -- what users and tests read --------------------------------------------------------

    def where(self, guest: str) -> str | None:
        """The host a guest runs on now, None if it runs nowhere."""
        import libvirt

        for name, host in self.hosts.items():
            try:
                conn = libvirt.openReadOnly(host.uri)
            except libvirt.libvirtError:
                continue
            try:
                domain = conn.lookupByName(guest)
                if domain.isActive():
                    return name
            except libvirt.libvirtError:
                continue
            finally:
                conn.close()
        return None

    def count(self, guest: str) -> int | None:
        """The guest's last counter value, read from the serial log where it runs now."""
        host = self.where(guest)
        return None if host is None else last_count(self.hosts[host].serial_log(guest))

    def inventory(self) -> dict[str, Any]:
        group = {
            "vars": {
                "rollup_driver": "libvirt",
                "rollup_target_version": TARGET_VERSION,
                "rollup_playbook": bundled.playbook("lab-patch.yml"),
                "rollup_reboot": "if-required",
                "rollup_unmovable": "shutdown-restart",
                "rollup_reboot_seconds": "5s",
                "rollup_patch_seconds": "5s",
            },
            "hosts": {name: host.inventory_vars() for name, host in self.hosts.items()},
        }
        return {"all": {"children": {GROUP: group}}}

    def write_inventory(self, path: Path) -> None:
        text = "# Written by `rollup lab up --libvirt`: the lab pool as an Ansible inventory.\n"
        path.write_text(text + yaml.safe_dump(self.inventory(), sort_keys=False))
        path.chmod(0o600)

    def banner(self) -> str:
        hosts = ", ".join(f"{name} {host.uri}" for name, host in self.hosts.items())
        guests = ", ".join(f"{g.name}@{g.home}" for g in self.guests)
        inventory = self.directory / "inventory.yml"
        return (
            f"libvirt lab pool {GROUP}: {len(self.hosts)} hosts, {len(self.guests)} QEMU guests\n"
            f"  hosts    {hosts}\n"
            f"  guests   {guests} (serial logs: hosts/<host>/root/var/log/libvirt/qemu)\n"
            f"  inventory {inventory}\n"
            f"  try      rollup plan {inventory}\n"
            "Ctrl-C stops the lab."
        )


def _prefix(network: str) -> str:
    parts = network.split(".")
    if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() for p in parts):
        raise BadInput(f"--network {network} is not a loopback /24: use e.g. 127.0.20.0")
    return ".".join(parts[:3])
