"""How long a run should take, from VM memory, migration bandwidth and the host timings.

A host's step is: evacuate, patch, reboot, restore. Each source host runs up to
`parallel_migrations` live migrations at once, each at `migration_bandwidth`; the
migrations are scheduled longest first onto the free lane (LPT), which is what a
semaphore-bounded executor does when fed the biggest VMs first.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from rollup.model import Move, Policy


def migration_seconds(memories: Iterable[int], policy: Policy) -> float:
    """Wall time to migrate VMs of these sizes off one source host."""
    lanes = [0.0] * max(1, policy.parallel_migrations)
    bandwidth = max(1, policy.migration_bandwidth)
    for memory in sorted(memories, reverse=True):
        heapq.heappush(lanes, heapq.heappop(lanes) + memory / bandwidth)
    return max(lanes)


def moves_seconds(moves: Iterable[Move], policy: Policy) -> float:
    """Wall time for moves that may come from several sources, each with its own lanes."""
    by_source: dict[str, list[int]] = {}
    for move in moves:
        by_source.setdefault(move.source, []).append(move.memory)
    return max((migration_seconds(m, policy) for m in by_source.values()), default=0.0)


def step_seconds(evacuate: Iterable[Move], restore: Iterable[Move], policy: Policy) -> float:
    """One host's turn: out, patch, reboot, back."""
    return (
        moves_seconds(evacuate, policy)
        + policy.patch_seconds
        + policy.reboot_seconds
        + moves_seconds(restore, policy)
    )
