"""Who holds a lab host's address, and the command that frees it.

A lab host's sshd cannot bind an address another process listens on: a lab left by a
crashed owner before reapers existed, a lab still running in another directory, or a
system sshd listening on every address. The error names that process and how to stop
it, read from /proc/net/tcp (the listening socket's inode) and /proc/*/fd (its owner).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
from pathlib import Path

from rollup.remote import processes

_LISTEN = "0A"


def holder(address: str, port: int) -> int | None:
    """The pid of a process listening on address:port (or on every address at port)."""
    inodes = _listening_inodes(address, port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = str(fd.readlink())
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return int(proc.name)
    return None


def taken(address: str, port: int, flag: str) -> str:
    """One line: what holds address:port and the command that stops it."""
    pid = holder(address, port)
    if pid is None:
        return (
            f"{address}:{port} is taken by a process rollup cannot see (another user's?):"
            f" give {flag} another loopback /24"
        )
    command = " ".join(processes.cmdline(pid).split())  # one line, whatever its argv holds
    lab_dir = _lab_dir_of(command)
    stop = f"rollup lab down --dir {lab_dir}" if lab_dir else f"kill {pid}"
    return (
        f"{address}:{port} is taken by pid {pid} ({command[:80]}): stop it with `{stop}`,"
        f" or give {flag} another loopback /24"
    )


def _lab_dir_of(command: str) -> Path | None:
    """The lab directory of a lab host's sshd (`-f <lab>/hosts/<host>/sshd_config`)."""
    words = command.split()
    for flag, value in itertools.pairwise(words):
        if flag == "-f" and value.endswith("/sshd_config"):
            config = Path(value)
            if config.parent.parent.name == "hosts":
                return config.parents[2]
    return None


def _listening_inodes(address: str, port: int) -> set[str]:
    wanted = {_hex(address, port), _hex("0.0.0.0", port)}
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1] in wanted and fields[3] == _LISTEN:
                found.add(fields[9])
    return found


def _hex(address: str, port: int) -> str:
    """An IPv4 address and port as /proc/net/tcp writes them (address in host order)."""
    packed = ipaddress.IPv4Address(address).packed
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
