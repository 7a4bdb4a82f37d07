"""Lab pools with real sshd per host on loopback networks 127.0.110-120, and helpers to
watch a running `rollup` from the outside: its files, its process list, its children's
environments."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import loopback
from tests.rollout.conftest import Lab
from tests.rollout.conftest import start_lab as start_shared_lab

_networks = itertools.cycle(range(110, 121))


def start_lab(directory: Path, *, hosts: int = 3, vms: int = 9, **scenario: Any) -> Lab:
    return start_shared_lab(
        directory,
        hosts=hosts,
        vms=vms,
        ssh=True,
        network=loopback.network(next(_networks)),
        **scenario,
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 (proc files: plain open is clearest)
            return handle.read()
    except OSError:  # the process or file went away while we looked
        return b""


@dataclass
class Watcher:
    """Samples, while a command runs, every process's command line, every child process's
    environment and every file under some directories, for any of `secrets`."""

    secrets: tuple[bytes, ...]
    directories: tuple[Path, ...]
    own_cmdline: bytes = b""  # the watched command itself: its environment is ours to give
    found: list[str] = field(default_factory=list)
    samples: int = 0
    children_seen: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.02)

    def _check(self, what: str, data: bytes) -> None:
        for secret in self.secrets:
            if secret in data:
                self.found.append(f"{what} holds {secret[:3]!r}...")

    def sample(self) -> None:
        self.samples += 1
        for entry in Path("/proc").iterdir():
            pid = entry.name
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            cmdline = _read(f"/proc/{pid}/cmdline")
            self._check(f"command line of {pid} ({cmdline[:80]!r})", cmdline)
            if cmdline == self.own_cmdline:
                continue  # rollup itself (and a fork of it before exec): we gave it that env
            name = cmdline.split(b"\0")[0].rsplit(b"/", 1)[-1]
            if b"ansible" in cmdline or name in (b"ssh", b"sh"):
                seen = b"ansible-playbook" if b"ansible-playbook" in cmdline else name
                self.children_seen.add(seen.decode(errors="replace"))
                self._check(
                    f"environment of {pid} ({cmdline[:80]!r})", _read(f"/proc/{pid}/environ")
                )
        for directory in self.directories:
            # os.walk skips what vanishes under it (rollup removes its ansible-runner
            # directories as it goes); rglob would raise and end the watching early.
            for root, _, files in os.walk(directory):
                for name in files:
                    path = Path(root) / name
                    if path.is_file():  # never open a FIFO or socket: it would block
                        self._check(f"file {path}", _read(str(path)))


def watched_run(
    command: list[str],
    secrets: tuple[str, ...],
    directories: tuple[Path, ...],
    environ: dict[str, str],
    timeout: float = 240,
) -> tuple[subprocess.CompletedProcess[str], Watcher]:
    watcher = Watcher(
        tuple(secret.encode() for secret in secrets),
        directories,
        own_cmdline=b"\0".join(part.encode() for part in command) + b"\0",
    )
    watcher.start()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=environ,
        )
    finally:
        watcher.stop()
    return done, watcher
