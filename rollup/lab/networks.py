"""Which loopback /24 a lab's hosts listen on: the one asked for, or the first free one.

In-process labs (one per `rollup run` of a lab inventory) and `rollup lab up` run side
by side: each takes a network no other lab listens on.
"""

from __future__ import annotations

import os
import socket

from rollup.errors import BadInput


def prefix(network: str) -> str:
    parts = network.split(".")
    if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() for p in parts):
        raise BadInput(f"--network {network} is not a loopback /24: use e.g. 127.0.10.0")
    return ".".join(parts[:3]) + "."


def free(ssh: bool, hosts: int, tried: set[str]) -> str:
    """A loopback /24 no other lab uses (in-process labs must not clash with `lab up`)."""
    # Not root, each sshd binds a port free at the time: only port 22 can clash.
    port = 22 if ssh and os.geteuid() == 0 else 0
    for third in range(11, 250):
        prefix = f"127.0.{third}."
        if prefix in tried:
            continue
        if not any(listening(f"{prefix}{i}", port) for i in range(1, min(hosts, 254) + 1)):
            return prefix
    raise BadInput(
        "no free loopback network for the lab: stop other labs (`rollup lab down --dir D`)"
    )


def listening(address: str, port: int) -> bool:
    if port == 0:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((address, port)) == 0
