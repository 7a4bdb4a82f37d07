"""A libvirt lab host: its own libvirtd in its own mount and UTS namespace, and its sshd.

Every host has a root directory (its disk, as in lab/hosts.py) under
`<lab_dir>/hosts/<name>/root`. Its libvirtd runs in a private mount namespace where the
host's own directories are bind-mounted over /etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, so daemons never see each
other's state; the QEMU processes it starts inherit that namespace. Each daemon has its
own host UUID (libvirt refuses to migrate to "the same host" otherwise), its own
hostname, and its own loopback address for both its TCP listener and QEMU's migration
stream (127.0.0.1 is refused as "the local machine"; other loopback addresses work).

The host's sshd is lab/hosts.py's LabMachine on the same address: SSH sessions see
ROLLUP_LAB_ROOT, and the host's `bin/reboot` asks the lab to reboot the host. A reboot
here is what a real one is to the daemons: everything of the host stops (libvirtd, sshd
and their sessions, any QEMU still running), /run is emptied, the boot id changes and
the host starts again at the version its last patch installed.

Needs root: mount namespaces (CAP_SYS_ADMIN), and libvirtd's qemu driver runs QEMU as
root here (`user = "root"`, no security driver, no cgroups).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO

from rollup.errors import BadInput
from rollup.lab.host_files import write_atomically
from rollup.lab.hosts import LabMachine
from rollup.lab.machine import RUNNING_VERSION

LIBVIRTD = "/usr/sbin/libvirtd"
# Per-host copies of these paths, bind-mounted over them inside the host's namespace.
PRIVATE_DIRS = (
    "etc/libvirt",
    "run/libvirt",
    "var/lib/libvirt",
    "var/log/libvirt",
    "var/cache/libvirt",
)
REBOOT_REQUEST = Path("run/rollup-lab/reboot")  # under the host root: written by bin/reboot
OS_RELEASE = Path("etc/os-release")  # the driver reads VERSION_ID from it
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_REBOOT_SCRIPT = """\
#!/bin/sh
# The lab host's reboot: the lab process notices the request and reboots this host.
mkdir -p "$ROLLUP_LAB_ROOT/run/rollup-lab"
date +%s > "$ROLLUP_LAB_ROOT/{request}"
"""


class LibvirtDaemon:
    """One host's libvirtd, started in a new mount + UTS namespace."""

    def __init__(self, name: str, root: Path, address: str, host_uuid: str) -> None:
        self.name = name
        self.root = root
        self.address = address
        self.host_uuid = host_uuid
        self.process: subprocess.Popen[bytes] | None = None
        self.namespace: str | None = None  # /proc/PID/ns/mnt link of the running daemon

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    @property
    def log(self) -> Path:
        return self.root / "var/log/libvirt/libvirtd.log"

    def configure(self) -> None:
        for directory in PRIVATE_DIRS:
            (self.root / directory).mkdir(parents=True, exist_ok=True)
            # The mount point must exist outside too; on a machine without libvirt's
            # packages some are missing.
            (Path("/") / directory).mkdir(parents=True, exist_ok=True)
        # Guests' serial logs go here; libvirt creates the file, not the directory.
        (self.root / "var/log/libvirt/qemu").mkdir(exist_ok=True)
        etc = self.root / "etc/libvirt"
        write_atomically(
            etc / "libvirtd.conf",
            f"""\
# rollup libvirt lab host {self.name} (lab only: TCP without authentication)
host_uuid = "{self.host_uuid}"
listen_tls = 0
listen_tcp = 1
listen_addr = "{self.address}"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
""",
        )
        write_atomically(
            etc / "qemu.conf",
            f"""\
# rollup libvirt lab host {self.name}
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
# QEMU stays in the host's namespace (libvirt would give each its own): a reboot of the
# lab host finds and stops every process of the host there.
namespaces = [ ]
migration_address = "{self.address}"
migration_host = "{self.address}"
""",
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running():
            return
        binds = "".join(f'mount --bind "$ROOT/{d}" "/{d}" || exit 1\n' for d in PRIVATE_DIRS)
        script = (
            f'set -u\n{binds}hostname "$NAME"\n'
            'exec "$LIBVIRTD" --listen --pid-file "$ROOT/run/libvirtd.pid"'
            ' --config "$ROOT/etc/libvirt/libvirtd.conf"\n'
        )
        offset = self.log.stat().st_size if self.log.exists() else 0
        stderr = (self.root / "run/libvirtd.stderr").open("ab")
        with stderr:
            self.process = self._spawn(script, stderr)
        self._wait_ready(offset)
        with contextlib.suppress(OSError):
            self.namespace = str(Path(f"/proc/{self.process.pid}/ns/mnt").readlink())

    def _spawn(self, script: str, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "ROOT": str(self.root),
                "NAME": self.name,
                "LIBVIRTD": LIBVIRTD,
                # How the lab's reaper finds this daemon, and through it the QEMU guests
                # in its mount namespace, if the lab's owner dies (lab/reaper.py). Not
                # ROLLUP_LAB_ROOT: stopping the host's sshd kills whatever carries that.
                "ROLLUP_LAB_LIBVIRTD": str(self.root),
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )

    def _wait_ready(self, offset: int) -> None:
        import libvirt  # only the lab and the driver need the binding

        quiet_libvirt()

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.running():
                raise BadInput(f"lab host {self.name}: libvirtd did not start: {self._why(offset)}")
            try:
                libvirt.openReadOnly(self.uri).close()
                return
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BadInput(
                        f"lab host {self.name}: libvirtd did not answer on {self.uri} within"
                        f" {START_TIMEOUT:.0f}s: {self._why(offset)}"
                    ) from None
                time.sleep(0.05)

    def _why(self, offset: int) -> str:
        stderr = self.root / "run/libvirtd.stderr"
        text = stderr.read_text(errors="replace") if stderr.exists() else ""
        with contextlib.suppress(OSError), self.log.open("rb") as log:
            log.seek(offset)
            text += log.read().decode(errors="replace")
        lines = [line for line in text.strip().splitlines() if "error" in line.lower()]
        return lines[-1] if lines else "no error in its log"

    def stop(self) -> None:
        """Stop libvirtd; QEMU processes it started keep running (a toolstack restart)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill_everything(self) -> None:
        """Every process left in the host's namespace (QEMU guests): a power cut."""
        if self.namespace is None:
            return
        for _ in range(50):
            left = _in_namespace(self.namespace)
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def _in_namespace(namespace: str) -> list[int]:
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if str((proc / "ns/mnt").readlink()) == namespace:
                    found.append(int(proc.name))
    return found


class LibvirtLabHost:
    """A libvirt lab host: disk (root dir), libvirtd, sshd, and how it reboots."""

    def __init__(self, name: str, lab_dir: Path, address: str) -> None:
        self.machine = LabMachine(name, lab_dir, address=address)
        self.name = name
        self.address = address
        self.root = self.machine.root
        self.daemon = LibvirtDaemon(name, self.root, address, str(uuid.uuid4()))
        self.daemon.configure()
        write_atomically(
            self.machine.bin / "reboot", _REBOOT_SCRIPT.format(request=REBOOT_REQUEST), 0o755
        )

    @property
    def uri(self) -> str:
        return self.daemon.uri

    def serial_log(self, guest: str) -> Path:
        return self.root / "var/log/libvirt/qemu" / f"{guest}.serial"

    def inventory_vars(self) -> dict[str, object]:
        return {**self.machine.inventory_vars(), "rollup_libvirt_uri": self.uri}

    def power_on(self, version: str) -> None:
        self.machine.power_on(str(uuid.uuid4()), version)
        write_atomically(
            self.root / OS_RELEASE, f'NAME="rollup libvirt lab"\nVERSION_ID="{version}"\n'
        )
        self.daemon.start()

    def power_off(self) -> None:
        self.machine.power_off()
        self.daemon.stop()
        self.daemon.kill_everything()
        # /run is a tmpfs on a real host: nothing in it survives a reboot.
        for directory in ("run/libvirt", "run/rollup", "run/rollup-lab"):
            shutil.rmtree(self.root / directory, ignore_errors=True)
        (self.root / "run/libvirt").mkdir(parents=True, exist_ok=True)

    def reboot_requested(self) -> bool:
        return (self.root / REBOOT_REQUEST).exists()

    def reboot(self, down_seconds: float = 0.5) -> None:
        """Power off, stay down a moment, boot the version the last patch installed."""
        version = self.machine.installed_version() or self.running_version()
        self.power_off()
        time.sleep(down_seconds)
        self.power_on(version)

    def running_version(self) -> str:
        return (self.root / RUNNING_VERSION).read_text().strip()

    def close(self) -> None:
        self.machine.close()
        self.daemon.stop()
        self.daemon.kill_everything()


def quiet_libvirt() -> None:
    """libvirt prints every error to stderr by default; ours are handled as exceptions."""
    import libvirt

    libvirt.registerErrorHandler(lambda _context, _error: None, None)
