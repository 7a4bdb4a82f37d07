"""A lab host's OpenSSH daemon: started in its own session, stopped with its sessions.

A simulated reboot must end every session, not only the listener: sshd forks a child per
connection that calls setsid() and outlives a killed listener. So stopping freezes the
listener (no new forks), collects its descendants and every process started with this
host's ROLLUP_LAB_ROOT, and kills them together.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from rollup.errors import BadInput, RemoteError
from rollup.lab.host_files import read_value
from rollup.remote import processes

SSHD = Path("/usr/sbin/sshd")
SSHD_MISSING = (
    "openssh-server is not installed: apt-get install -y openssh-server, "
    "or run the lab without --ssh"
)
START_TIMEOUT = 5.0

_key_lock = threading.Lock()


def client_key(lab_dir: Path) -> Path:
    """The lab's SSH client key (ed25519, no passphrase), generated once per lab dir."""
    key = lab_dir / "ssh" / "client_ed25519"
    with _key_lock:
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            keygen(key, comment="rollup-lab-client")
        key.chmod(0o600)
    return key


def keygen(path: Path, comment: str) -> None:
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        raise BadInput("ssh-keygen is not installed: apt-get install -y openssh-client") from None


def default_port(address: str) -> int:
    if os.geteuid() == 0:
        return 22
    # Not root: sshd cannot bind 22. Pick a port that is free now and keep it for good.
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class Sshd:
    """One host's daemon, run from the sshd_config in its host dir."""

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
        pid = read_value(self.pid_file)
        if pid and pid.isdigit() and str(self.config) in processes.cmdline(int(pid)):
            self._kill(int(pid))
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(pid), os.WNOHANG)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
