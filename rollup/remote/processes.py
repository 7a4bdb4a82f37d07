"""Finding and killing whole process trees, read from /proc (Linux).

Killing a process group is not enough for the daemons rollup starts: sshd's per-connection
children and ansible's workers call setsid() and leave the group, yet stay descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

_DEATH_SECONDS = 5.0
_ROUNDS = 10  # a tree that keeps forking faster than we freeze it is not one we start


def parents() -> dict[int, int]:
    """pid → parent pid of every process we can see."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        found[int(entry.name)] = int(fields[1])
    return found


def descendants(roots: set[int]) -> set[int]:
    """Every process below the roots (the roots excluded)."""
    by_parent = parents()
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        children = {pid for pid, ppid in by_parent.items() if ppid in frontier} - found - roots
        found |= children
        frontier = children
    return found


def with_environ(entry: str) -> set[int]:
    """Processes whose environment holds `entry` ("NAME=value") exactly."""
    needle = entry.encode()
    return with_environ_matching(lambda entries: needle in entries)


def with_environ_prefix(prefixes: tuple[bytes, ...]) -> set[int]:
    """Processes with an environment entry starting with one of `prefixes`."""
    return with_environ_matching(lambda entries: any(e.startswith(prefixes) for e in entries))


def with_environ_matching(match: Callable[[list[bytes]], bool]) -> set[int]:
    """Processes whose environment entries (as bytes) `match`; those we cannot read are
    not ours to find."""
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = proc.joinpath("environ").read_bytes()
        except OSError:
            continue
        if match(environ.split(b"\0")):
            found.add(int(proc.name))
    return found


def with_cmdline(fragment: str) -> set[int]:
    """Processes whose command line contains `fragment`."""
    return {
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and fragment in cmdline(int(proc.name))
    }


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_tree(roots: set[int], also: Callable[[], set[int]] | None = None) -> set[int]:
    """SIGKILL the roots, all their descendants and whatever `also` finds; return the pids.

    Everything found is frozen (SIGSTOP) first, so no process forks a child we miss
    while we look, then all are killed together.
    """
    own = {os.getpid()}
    victims: set[int] = set()
    frontier = set(roots) - own
    for _ in range(_ROUNDS):
        for pid in frontier:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        victims |= frontier
        extra = also() if also is not None else set()
        frontier = (descendants(victims) | extra) - victims - own
        if not frontier:
            break
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: a killed listener may hold its port a moment
    # longer, and a "rebooted" host must not answer. Return once they are all gone.
    deadline = time.monotonic() + _DEATH_SECONDS
    while any(running(pid) for pid in victims) and time.monotonic() < deadline:
        time.sleep(0.005)
    return victims


def running(pid: int) -> bool:
    """Whether the process exists and is no zombie (a zombie holds no ports or files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")
