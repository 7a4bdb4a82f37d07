"""Loopback addresses for the tests' labs, disjoint between pytest-xdist workers.

Each test package keeps its own third octets (127.S.20 for tests/lab, 127.S.130 up
for tests/rollout, ...); the second octet S is the worker's: 0 in a plain run, 10 + N
for xdist worker gwN. As root, every lab host's sshd binds port 22, so two workers'
labs must never share an address. Labs that pick their own network (an inventory's
in-process lab) start at 127.0.11 and retry the next /24 when one is taken.
"""

from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
SECOND = 10 + int(_worker[2:]) if _worker.startswith("gw") else 0


def prefix(third: int) -> str:
    """The /24 `third` of this worker, as an address prefix: '127.S.T.'."""
    if not 0 < third < 255:
        raise ValueError(f"third octet {third} out of range")
    return f"127.{SECOND}.{third}."


def network(third: int) -> str:
    """The /24 `third` of this worker, as `--network` takes it: '127.S.T.0'."""
    return prefix(third) + "0"


def address(third: int, host: int) -> str:
    return prefix(third) + str(host)
