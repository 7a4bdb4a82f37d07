"""A lab never outlives its owner, however the owner ends.

Every lab (in-process for `rollup run`, or `rollup lab up`) starts one reaper: a small
process in a session of its own, reading a pipe whose only writer is the owner. The
kernel closes that pipe when the owner dies, even by SIGKILL, which no signal handler
or `finally` sees; the reaper then stops every process the lab started. A lab that
stops cleanly writes one byte first, and the reaper leaves at once.

PR_SET_PDEATHSIG would not do: it fires when the thread that forked exits, and labs
start daemons from worker threads.

Processes are found by what the lab marks them with, not by pid files: sshd sessions
carry `ROLLUP_LAB_ROOT=<lab dir>/hosts/<host>/root` in their environment, libvirtd
`ROLLUP_LAB_LIBVIRTD=` the same; sshd daemons show their `-f <lab dir>/hosts/...` in
their process title; QEMU guests are found by their command line (the lab's kernel)
and by the mount namespace of their host's libvirtd.

The reaper holds the lab directory's lock (`lab.lock`, the same open file as the
owner's) until it has swept, so a lab starting in that directory waits for the sweep
instead of racing it. `rollup lab down` sweeps with the same function.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rollup.errors import BadInput
from rollup.remote import processes

LOCK_FILE = "lab.lock"
PID_FILE = "lab.pid"
_CLEAN = b"c"
_LOCK_WAIT = 30.0  # a dying lab's reaper sweeping, or a lab stopping: seconds, not more


def marks(lab_dir: Path) -> tuple[bytes, ...]:
    """The environment entry prefixes the processes of the lab's hosts carry."""
    hosts = lab_dir.resolve() / "hosts"
    return tuple(f"{name}={hosts}/".encode() for name in ("ROLLUP_LAB_ROOT", "ROLLUP_LAB_LIBVIRTD"))


def find(lab_dir: Path) -> set[int]:
    """The processes the lab in `lab_dir` started that are still running."""
    lab_dir = lab_dir.resolve()
    # sshd rewrites its environment area with its process title, which keeps `-f CONFIG`;
    # QEMU guests boot the lab's kernel from the lab directory.
    commands = (f"-f {lab_dir / 'hosts'}/", f"{lab_dir / 'guest'}/")
    found = processes.with_environ_prefix(marks(lab_dir))
    for fragment in commands:
        found |= processes.with_cmdline(fragment)
    return {pid for pid in found if processes.running(pid)}


def sweep(lab_dir: Path) -> set[int]:
    """Kill every process the lab in `lab_dir` started (and what they started); the pids."""
    first = find(lab_dir)
    own = _namespace(os.getpid())
    namespaces = {ns for pid in first if (ns := _namespace(pid)) and ns != own}
    return processes.kill_tree(first, also=lambda: find(lab_dir) | _in_namespaces(namespaces))


class Reaper:
    """The owner's side: the lab directory's lock and the pipe the reaper watches."""

    def __init__(
        self, lab_dir: Path, lock: int, pipe: int, process: subprocess.Popen[bytes]
    ) -> None:
        self.lab_dir = lab_dir
        self._lock = lock
        self._pipe = pipe
        self._process = process

    @classmethod
    def start(cls, lab_dir: Path) -> Reaper:
        """Take `lab_dir` for this process's lab and start its reaper."""
        lab_dir = lab_dir.resolve()
        lock = take_lock(lab_dir, wait=_LOCK_WAIT)
        read_end, write_end = os.pipe()  # not inherited: only this process writes it
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "rollup.lab.reaper", str(lab_dir)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(lock,),
                start_new_session=True,  # no terminal's SIGHUP or Ctrl-C reaches it
            )
        except BaseException:
            os.close(write_end)
            os.close(lock)
            raise
        finally:
            os.close(read_end)
        (lab_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        return cls(lab_dir, lock, write_end, process)

    def release(self) -> None:
        """The lab stopped everything it started: the reaper leaves without a sweep."""
        if self._pipe < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._pipe, _CLEAN)
        os.close(self._pipe)
        self._pipe = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(10)
        with contextlib.suppress(FileNotFoundError):
            pid_file = self.lab_dir / PID_FILE
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        os.close(self._lock)

    def sweep_and_release(self) -> None:
        """A lab that failed to start: whatever it had started goes, then the directory."""
        sweep(self.lab_dir)
        self.release()


def take_lock(lab_dir: Path, wait: float, *, while_owner_lives: bool = False) -> int:
    """The lab directory's lock as an open fd, waiting up to `wait` seconds for it.

    A live lab holding it fails at once (a lab starting there would stop its hosts),
    unless `while_owner_lives` (`rollup lab down` waits for the owner it stopped).
    """
    lab_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lab_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            owner = owner_pid(lab_dir)
            # A dead owner's reaper is sweeping: wait for it.
            live = owner is not None and owner != os.getpid() and not while_owner_lives
            if live or time.monotonic() >= deadline:
                os.close(fd)
                raise BadInput(in_use(lab_dir)) from None
            time.sleep(0.05)


def in_use(lab_dir: Path) -> str:
    owner = owner_pid(lab_dir)
    by = f" (pid {owner})" if owner else ""
    return (
        f"lab directory {lab_dir} is in use by a running lab{by}:"
        f" stop it with `rollup lab down --dir {lab_dir}`, or give another --dir"
    )


def owner_pid(lab_dir: Path) -> int | None:
    """The pid of the process whose lab holds `lab_dir`, if it is still running."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((lab_dir / PID_FILE).read_text().strip())
        if processes.running(pid):
            return pid
    return None


def _namespace(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/mnt").readlink())
    except OSError:
        return None


def _in_namespaces(namespaces: set[str]) -> set[int]:
    if not namespaces:
        return set()
    return {
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and _namespace(int(proc.name)) in namespaces
    }


def _watch(lab_dir: Path) -> None:
    for signum in (signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    try:
        said = os.read(0, 1)  # blocks until the owner writes or dies
    except OSError:
        said = b""
    if said != _CLEAN:
        sweep(lab_dir)
    # The lock fd closes as this process exits: a lab waiting for the directory starts.


if __name__ == "__main__":
    _watch(Path(sys.argv[1]))
