"""Lab host machines: a root directory as the host's disk and, with --ssh, its own sshd.

Each lab host lives under `<lab_dir>/hosts/<name>/`:
  root/                 the host's disk (file layout in lab/machine.py)
  bin/                  first on PATH in its SSH sessions (`hostname` prints the host name)
  sshd_config, ssh_host_ed25519_key, authorized_keys, sshd.pid, sshd.log

With ssh, every host runs its own OpenSSH daemon on its own loopback address, so rollup
reaches it exactly as it reaches a real host: paramiko and ansible-playbook over SSH. The
daemon's `SetEnv` gives each session the host's identity (ROLLUP_LAB_HOST), its disk
(ROLLUP_LAB_ROOT) and the lab's package repository (ROLLUP_LAB_REPO), with its own
package tools first on PATH: an XCP-ng host's `yum`, `rpm` and `needs-restarting`
(lab/yum.py), or a Proxmox VE host's `apt-get`, `apt`, `dpkg-query` and `ha-manager`
(lab/apt.py). Without ssh, Ansible's local connection gets the same variables through
the inventory (`rollup_lab_env`).

A simulated reboot must end every session, not only the listener (lab/sshd.py).
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollup.errors import BadInput
from rollup.lab import rpmdb, sshd
from rollup.lab.faults import HostFaults
from rollup.lab.host_files import read_value, write_atomically
from rollup.lab.host_packages import HostPackages
from rollup.lab.machine import (
    BOOT_ID,
    FAIL_PATCH,
    INSTALLED_VERSION,
    RUNNING_VERSION,
    YumRun,
)
from rollup.lab.packages import REPOSITORY_FILE, Rpmdb
from rollup.remote import RemoteHost

LAB_NETWORK = "127.0.10"  # the lab's hosts listen on 127.0.10.1, 127.0.10.2, ...
# Host keys change whenever a lab dir is recreated, so the lab (and only the lab) turns
# host key checking off in its inventory.
NO_HOST_KEY_CHECK = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The package tools of a lab host, first on its sessions' PATH: by `tools`, the module
# whose main() they run and the commands it answers.
TOOLS = ("yum", "rpm", "needs-restarting")
DEB_TOOLS = ("apt-get", "apt", "dpkg-query", "ha-manager")
TOOL_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rpm": ("rollup.lab.yum", TOOLS),
    "deb": ("rollup.lab.apt", DEB_TOOLS),
}
# What a boot empties: a real /run is a tmpfs.
RUN_FILES = (Path("run/reboot-required"), Path("run/reboot-required.pkgs"))
_TOOL_SCRIPT = """#!{python}
import sys

from {module} import main

sys.exit(main())
"""


def loopback_address(index: int, network: str = LAB_NETWORK) -> str:
    """The address of the index-th lab host (1-based), e.g. 127.0.10.3."""
    if not 1 <= index <= 254:
        raise BadInput(f"lab host index {index} is out of range: a lab has at most 254 hosts")
    return f"{network}.{index}"


def stop_stale_daemons(lab_dir: Path) -> None:
    """Stop the sshd daemons (and their sessions) an earlier lab in `lab_dir` left running.

    A controller killed with SIGKILL takes its in-process lab down without stopping its
    hosts' daemons (they run in sessions of their own). Their pid files are the only
    trace of them: a lab starting fresh must stop them before it deletes the files.
    """
    for host_dir in sorted((lab_dir / "hosts").glob("*")):
        if (host_dir / "sshd.pid").exists():
            sshd.Sshd(host_dir.name, host_dir, host_dir / "root").stop_stale()


class LabMachine:
    """One lab host's disk and daemons; implements lab.machine.HostMachine.

    `address` given: the host is reached over SSH at address:port (port 22 as root, else a
    free high port). `address` None: the host is reached by Ansible's local connection.
    Nothing runs until `power_on`.
    """

    def __init__(
        self,
        name: str,
        lab_dir: Path,
        *,
        address: str | None = None,
        port: int | None = None,
        speed: float = 1.0,
        tools: str = "rpm",
        shared_etc_pve: Path | None = None,
        mirror: str | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise BadInput(
                f"lab host name {name!r} is not usable as a directory name: "
                "use letters, digits, '.', '_' and '-'"
            )
        if tools not in TOOL_SETS:
            raise BadInput(f"lab host tools {tools!r}: use one of {', '.join(TOOL_SETS)}")
        self.name = name
        self.tools = tools
        self.speed = speed  # the lab's clock: its yum downloads take lab seconds too
        self.dir = (lab_dir / "hosts" / name).resolve()
        self.root = self.dir / "root"
        self.bin = self.dir / "bin"
        self.repository = (lab_dir / "repo" / REPOSITORY_FILE).resolve()
        self.address = address
        self.user = getpass.getuser()
        self.key: Path | None = None
        self.port = 0
        self._sshd: sshd.Sshd | None = None
        self._powered = False
        self._refuse_ssh = False
        # The pool powers hosts off and on from its scheduler while faults come from the
        # operator's thread.
        self._lock = threading.RLock()
        for directory in (self.root / "etc/rollup-lab", self.root / BOOT_ID.parent, self.bin):
            directory.mkdir(parents=True, exist_ok=True)
        write_atomically(
            self.bin / "hostname", f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(name)}\n", 0o755
        )
        self._write_tools(tools)
        self.disk = HostPackages(self.root, self.repository, mirror if tools == "rpm" else None)
        if shared_etc_pve is not None:
            self._link_etc_pve(shared_etc_pve)
        if address is not None:
            if not sshd.SSHD.exists():
                raise BadInput(sshd.SSHD_MISSING)
            if '"' in str(self.dir) or any(ch.isspace() for ch in str(self.dir)):
                raise BadInput(f"lab dir {self.dir} contains spaces or quotes: sshd cannot use it")
            self.key = sshd.client_key(lab_dir.resolve())
            self.port = port if port is not None else sshd.default_port(address)
            self._prepare_sshd()

    @property
    def ssh(self) -> bool:
        return self.address is not None

    @property
    def environment(self) -> dict[str, str]:
        """What every process on this host sees: its identity and its disk."""
        return {
            "ROLLUP_LAB_HOST": self.name,
            "ROLLUP_LAB_ROOT": str(self.root),
            "ROLLUP_LAB_REPO": str(self.repository),
            "ROLLUP_LAB_SPEED": f"{self.speed:g}",
        }

    @property
    def local_path(self) -> str:
        return os.pathsep.join([str(self.bin), os.environ.get("PATH", os.defpath)])

    def inventory_vars(self) -> dict[str, Any]:
        """The Ansible inventory variables the lab writes for this host."""
        found = self._connection_vars()
        if self.tools == "deb":
            # Where its apt writes what a real one writes to /run/reboot-required.
            found["rollup_reboot_required_file"] = str(self.root / RUN_FILES[0])
        return found

    def _connection_vars(self) -> dict[str, Any]:
        if self.address is None:
            return {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                # Its package tools first, as its sshd's PATH would put them.
                "rollup_lab_env": {**self.environment, "PATH": self.local_path},
            }
        return {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_connection": "ssh",
            "ansible_ssh_common_args": NO_HOST_KEY_CHECK,
            # The lab host is this machine: skip interpreter discovery (one round trip).
            "ansible_python_interpreter": sys.executable,
            "rollup_check_host_keys": False,
        }

    def remote_host(self) -> RemoteHost:
        """This host as the inventory loader would build it from `inventory_vars()`."""
        ansible_vars = self.inventory_vars()
        if self.address is None:
            return RemoteHost(
                name=self.name,
                address="localhost",
                connection="local",
                environment={**self.environment, "PATH": self.local_path},
                ansible_vars=ansible_vars,
            )
        return RemoteHost(
            name=self.name,
            address=self.address,
            port=self.port,
            user=self.user,
            key_file=str(self.key),
            check_host_keys=False,
            ansible_vars=ansible_vars,
        )

    # -- HostMachine ------------------------------------------------------------------

    def installed_version(self) -> str | None:
        return read_value(self.root / INSTALLED_VERSION)

    def clear_installed_version(self) -> None:
        (self.root / INSTALLED_VERSION).unlink(missing_ok=True)

    def packages(self) -> Rpmdb | None:
        return self.disk.read()

    def set_packages(self, packages: Rpmdb) -> None:
        self.disk.write(packages)

    def run_yum(self, args: Sequence[str]) -> YumRun | None:
        """`yum ARGS` run on the host as its own scripts run it, when its yum is real dnf."""
        if not self.disk.real:
            return None
        return self.disk.run_yum(self.name, args)

    def booted_packages(self) -> Rpmdb | None:
        return rpmdb.booted(self.root)

    def take_yum_lock(self) -> bool:
        return self.disk.take_lock()

    def downloaded(self) -> set[str]:
        return self.disk.downloaded()

    def set_downloaded(self, nvrs: set[str]) -> None:
        self.disk.set_downloaded(nvrs)

    def patch_fault(self) -> bool:
        return (self.root / FAIL_PATCH).exists()

    def running_version(self) -> str | None:
        return read_value(self.root / RUNNING_VERSION)

    def boot_id(self) -> str | None:
        return read_value(self.root / BOOT_ID)

    def power_off(self) -> None:
        with self._lock:
            self._powered = False
            self._stop_sshd()

    def power_on(self, boot_id: str, version: str) -> None:
        with self._lock:
            write_atomically(self.root / BOOT_ID, boot_id + "\n")
            write_atomically(self.root / RUNNING_VERSION, version + "\n")
            for path in RUN_FILES:
                (self.root / path).unlink(missing_ok=True)
            rpmdb.record_boot(self.root)
            self._powered = True
            if not self._refuse_ssh:
                self._start_sshd()

    def set_faults(self, faults: HostFaults) -> None:
        refuse_ssh = faults.refuse_ssh
        with self._lock:
            self.disk.set_busy(faults.yum_busy)
            if faults.fail_patch:
                write_atomically(self.root / FAIL_PATCH, "set by the lab's fail_patch fault\n")
            else:
                (self.root / FAIL_PATCH).unlink(missing_ok=True)
            self._refuse_ssh = refuse_ssh
            if refuse_ssh:
                self._stop_sshd()
            elif self._powered:
                self._start_sshd()

    def close(self) -> None:
        with self._lock:
            self._powered = False
            self._stop_sshd()
            self.disk.close()

    def __enter__(self) -> LabMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_tools(self, tools: str) -> None:
        module, commands = TOOL_SETS[tools]
        for tool in commands:
            script = _TOOL_SCRIPT.format(python=sys.executable, module=module)
            write_atomically(self.bin / tool, script, 0o755)
        # A lab dir reused for the other flavor must not keep its tools on PATH.
        for other, (_, stale) in TOOL_SETS.items():
            if other != tools:
                for tool in stale:
                    (self.bin / tool).unlink(missing_ok=True)

    def _link_etc_pve(self, shared: Path) -> None:
        """Proxmox's /etc/pve is pmxcfs, one file system for the whole cluster."""
        shared = shared.resolve()
        shared.mkdir(parents=True, exist_ok=True)
        link = self.root / "etc/pve"
        if link.is_symlink():
            if link.resolve() == shared:
                return
            link.unlink()
        elif link.exists():
            raise BadInput(f"{link} is a directory of its own: it cannot become {shared}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared, target_is_directory=True)

    # -- sshd -------------------------------------------------------------------------

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    def sshd_running(self) -> bool:
        return self._sshd is not None and self._sshd.running()

    @property
    def sshd_pid(self) -> int | None:
        """The listening daemon's pid while it runs (its sessions are its descendants)."""
        if self._sshd is None or self._sshd.process is None or not self._sshd.running():
            return None
        return self._sshd.process.pid

    def _prepare_sshd(self) -> None:
        host_key = self.dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            sshd.keygen(host_key, comment=f"rollup-lab-{self.name}")
        assert self.key is not None
        public = self.key.with_suffix(".pub").read_text()
        write_atomically(self.dir / "authorized_keys", public, 0o600)
        path = f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        session = {**self.environment, "PATH": path, "HOME": str(self.dir)}
        setenv = " ".join(f'"{name}={value}"' for name, value in session.items())
        config = f"""\
# rollup lab host {self.name}, written by rollup/lab/hosts.py
ListenAddress {self.address}:{self.port}
HostKey {host_key}
PidFile {self.dir / "sshd.pid"}
AuthorizedKeysFile {self.dir / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
# Ansible opens several connections at once; the default 10:30:100 drops some.
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
# A lab host is its own machine: its own HOME, so sessions never run this machine's
# dotfiles (a shell rc killed mid-way by a simulated reboot can leave locks behind
# that stall every later login).
SetEnv {setenv}
"""
        write_atomically(self.sshd_config, config, 0o600)
        self._sshd = sshd.Sshd(self.name, self.dir, self.root)
        # A lab that dies without close() must not leave daemons holding its addresses.
        weakref.finalize(self, self._sshd.stop)

    def _start_sshd(self) -> None:
        if self._sshd is not None:
            self._sshd.start()

    def _stop_sshd(self) -> None:
        if self._sshd is not None:
            self._sshd.stop()
