"""Lab host machines: a root directory as the host's disk and, with --ssh, its own sshd.

Each lab host lives under `<lab_dir>/hosts/<name>/`:
  root/                 the host's disk (file layout in lab/machine.py)
  bin/                  first on PATH in its SSH sessions (`hostname` prints the host name)
  sshd_config, ssh_host_ed25519_key, authorized_keys, sshd.pid, sshd.log

With ssh, every host runs its own OpenSSH daemon on its own loopback address, so rollup
reaches it exactly as it reaches a real host: paramiko and ansible-playbook over SSH. The
daemon's `SetEnv` gives each session the host's identity (ROLLUP_LAB_HOST) and disk
(ROLLUP_LAB_ROOT). Without ssh, Ansible's local connection gets the same two variables
through the inventory (`rollup_lab_env`).

A simulated reboot must end every session, not only the listener: sshd forks a child per
connection that calls setsid() and outlives a killed listener. So the machine freezes the
listener (no new forks), collects its descendants and every process started with this
host's ROLLUP_LAB_ROOT, and kills them together.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from rollup.errors import BadInput, RemoteError
from rollup.lab.machine import BOOT_ID, FAIL_PATCH, INSTALLED_VERSION, RUNNING_VERSION
from rollup.remote import RemoteHost, processes

SSHD = Path("/usr/sbin/sshd")
SSHD_MISSING = (
    "openssh-server is not installed: apt-get install -y openssh-server, "
    "or run the lab without --ssh"
)
LAB_NETWORK = "127.0.10"  # the lab's hosts listen on 127.0.10.1, 127.0.10.2, ...
# Host keys change whenever a lab dir is recreated, so the lab (and only the lab) turns
# host key checking off in its inventory.
NO_HOST_KEY_CHECK = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
START_TIMEOUT = 5.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_key_lock = threading.Lock()


def loopback_address(index: int, network: str = LAB_NETWORK) -> str:
    """The address of the index-th lab host (1-based), e.g. 127.0.10.3."""
    if not 1 <= index <= 254:
        raise BadInput(f"lab host index {index} is out of range: a lab has at most 254 hosts")
    return f"{network}.{index}"


def client_key(lab_dir: Path) -> Path:
    """The lab's SSH client key (ed25519, no passphrase), generated once per lab dir."""
    key = lab_dir / "ssh" / "client_ed25519"
    with _key_lock:
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            _keygen(key, comment="rollup-lab-client")
        key.chmod(0o600)
    return key


def stop_stale_daemons(lab_dir: Path) -> None:
    """Stop the sshd daemons (and their sessions) an earlier lab in `lab_dir` left running.

    A controller killed with SIGKILL takes its in-process lab down without stopping its
    hosts' daemons (they run in sessions of their own). Their pid files are the only
    trace of them: a lab starting fresh must stop them before it deletes the files.
    """
    for host_dir in sorted((lab_dir / "hosts").glob("*")):
        if (host_dir / "sshd.pid").exists():
            _Sshd(host_dir.name, host_dir, host_dir / "root").stop_stale()


class LabMachine:
    """One lab host's disk and daemons; implements lab.machine.HostMachine.

    `address` given: the host is reached over SSH at address:port (port 22 as root, else a
    free high port). `address` None: the host is reached by Ansible's local connection.
    Nothing runs until `power_on`.
    """

    def __init__(
        self, name: str, lab_dir: Path, *, address: str | None = None, port: int | None = None
    ) -> None:
        if not _NAME.match(name):
            raise BadInput(
                f"lab host name {name!r} is not usable as a directory name: "
                "use letters, digits, '.', '_' and '-'"
            )
        self.name = name
        self.dir = (lab_dir / "hosts" / name).resolve()
        self.root = self.dir / "root"
        self.bin = self.dir / "bin"
        self.address = address
        self.user = getpass.getuser()
        self.key: Path | None = None
        self.port = 0
        self._sshd: _Sshd | None = None
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
        if address is not None:
            if not SSHD.exists():
                raise BadInput(SSHD_MISSING)
            if '"' in str(self.dir) or any(ch.isspace() for ch in str(self.dir)):
                raise BadInput(f"lab dir {self.dir} contains spaces or quotes: sshd cannot use it")
            self.key = client_key(lab_dir.resolve())
            self.port = port if port is not None else _default_port(address)
            self._prepare_sshd()

    @property
    def ssh(self) -> bool:
        return self.address is not None

    @property
    def environment(self) -> dict[str, str]:
        """What every process on this host sees: its identity and its disk."""
        return {"ROLLUP_LAB_HOST": self.name, "ROLLUP_LAB_ROOT": str(self.root)}

    def inventory_vars(self) -> dict[str, Any]:
        """The Ansible inventory variables the lab writes for this host."""
        if self.address is None:
            return {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "rollup_lab_env": self.environment,
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
                environment=self.environment,
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
        return _read(self.root / INSTALLED_VERSION)

    def running_version(self) -> str | None:
        return _read(self.root / RUNNING_VERSION)

    def boot_id(self) -> str | None:
        return _read(self.root / BOOT_ID)

    def power_off(self) -> None:
        with self._lock:
            self._powered = False
            self._stop_sshd()

    def power_on(self, boot_id: str, version: str) -> None:
        with self._lock:
            write_atomically(self.root / BOOT_ID, boot_id + "\n")
            write_atomically(self.root / RUNNING_VERSION, version + "\n")
            self._powered = True
            if not self._refuse_ssh:
                self._start_sshd()

    def set_faults(self, refuse_ssh: bool, fail_patch: bool) -> None:
        with self._lock:
            if fail_patch:
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

    def __enter__(self) -> LabMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            _keygen(host_key, comment=f"rollup-lab-{self.name}")
        assert self.key is not None
        public = self.key.with_suffix(".pub").read_text()
        write_atomically(self.dir / "authorized_keys", public, 0o600)
        path = f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
SetEnv "ROLLUP_LAB_HOST={self.name}" "ROLLUP_LAB_ROOT={self.root}" "PATH={path}" "HOME={self.dir}"
"""
        write_atomically(self.sshd_config, config, 0o600)
        self._sshd = _Sshd(self.name, self.dir, self.root)
        # A lab that dies without close() must not leave daemons holding its addresses.
        weakref.finalize(self, self._sshd.stop)

    def _start_sshd(self) -> None:
        if self._sshd is not None:
            self._sshd.start()

    def _stop_sshd(self) -> None:
        if self._sshd is not None:
            self._sshd.stop()


class _Sshd:
    """One host's OpenSSH daemon: started in its own session, stopped with its sessions."""

    def __init__(self, host: str, host_dir: Path, root: Path) -> None:
        self.host = host
        self.config = host_dir / "sshd_config"
        self.log = host_dir / "sshd.log"
        self.pid_file = host_dir / "sshd.pid"
        # Every process of this host's sessions has it in its environment (SetEnv).
        self.mark = f"ROLLUP_LAB_ROOT={root}"
        self.process: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running():
            return
        self._kill_stale()
        if os.geteuid() == 0:
            # sshd's privilege separation directory; no init system creates it here.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(self.config), "-E", str(self.log)],
            # The daemon carries its sessions' mark too: the lab's reaper finds it by that.
            env={**os.environ, "ROLLUP_LAB_ROOT": self.mark.partition("=")[2]},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Ready when it says so in its log: a connect test could reach another daemon
        # (another lab) that holds the same address while ours failed to bind.
        deadline = time.monotonic() + START_TIMEOUT
        while "Server listening on" not in (news := _read_from(self.log, offset)):
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                lines = news.strip().splitlines()
                # sshd says why on one line and that it gives up on the next.
                cause = "; ".join(lines[-2:]) if lines else "no log output"
                raise RemoteError(
                    f"{self.host}: sshd did not start: {cause}", host=self.host, output_tail=news
                )
            time.sleep(0.005)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self._kill(self.process.pid)
        else:  # the daemon died (or was killed) on its own: its sessions may live on
            processes.kill_tree(set(), also=lambda: processes.with_environ(self.mark))
        self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def _kill(self, pid: int) -> None:
        """The daemon, its sessions, and what they started (even if it left them)."""
        processes.kill_tree({pid}, also=lambda: processes.with_environ(self.mark))

    def stop_stale(self) -> None:
        """Stop a daemon an earlier run on this host dir left behind, if any."""
        self._kill_stale()
        self.pid_file.unlink(missing_ok=True)

    def _kill_stale(self) -> None:
        """A daemon left by an earlier, crashed lab run on this host dir holds the address."""
        pid = _read(self.pid_file)
        if pid and pid.isdigit() and str(self.config) in processes.cmdline(int(pid)):
            self._kill(int(pid))
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(pid), os.WNOHANG)


def _default_port(address: str) -> int:
    if os.geteuid() == 0:
        return 22
    # Not root: sshd cannot bind 22. Pick a port that is free now and keep it for good.
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        raise BadInput("ssh-keygen is not installed: apt-get install -y openssh-client") from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically, so a reader (the pool, a playbook) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(mode)
    partial.replace(path)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
