"""Choosing a destination for one VM against the pool as it is now, during a run.

The plan says where each VM should go; reality may differ by the time a host's turn
comes (a host went down, an operator moved VMs). The rollout then re-places VMs here,
under the same rules as the planner: enabled and live hosts only, never to an older
version, never over-committing memory, counting migrations this controller already has
in flight (the ledger) because a snapshot does not show them yet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rollup.model import VM, Pool, version_key


class Ledger:
    """Bytes this controller has promised to each destination host but not yet seen land."""

    def __init__(self) -> None:
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()

    def reserved(self, host: str) -> int:
        with self._lock:
            return self._reserved.get(host, 0)

    def try_reserve(self, host: str, free: int, amount: int) -> bool:
        with self._lock:
            taken = self._reserved.get(host, 0)
            if free - taken < amount:
                return False
            self._reserved[host] = taken + amount
            return True

    def release(self, host: str, amount: int) -> None:
        with self._lock:
            left = self._reserved.get(host, 0) - amount
            if left > 0:
                self._reserved[host] = left
            else:
                self._reserved.pop(host, None)


def choose_destination(
    pool: Pool,
    vm: VM,
    ledger: Ledger,
    avoid: Iterable[str] = (),
    preferred: str | None = None,
    only: str | None = None,
    headroom: float = 0.0,
) -> str | None:
    """Reserve and return a host for `vm`, the preferred one if it still qualifies.

    `headroom`: the share of each host's capacity an evacuation leaves free (a VM going
    back to the host it came from needs none: it fitted there before)."""
    avoided = set(avoid)
    source = pool.host(vm.host) if vm.host else None
    floor = version_key(source.version) if source else ()

    def fits(host_id: str) -> bool:
        host = pool.host(host_id)
        return (
            host.enabled
            and host.live
            and host.id != vm.host
            and host.id not in avoided
            and version_key(host.version) >= floor
        )

    candidates: list[str] = []
    if preferred is not None and any(h.id == preferred for h in pool.hosts):
        candidates.append(preferred)
    if only is None:
        # Best fit: the host with the least room that still takes the VM keeps big holes
        # free for big VMs; ties go to the newer version, then by name for determinism.
        others = sorted(
            (h for h in pool.hosts if h.id != preferred),
            key=lambda h: (
                h.memory_free - ledger.reserved(h.id),
                tuple(-p for p in version_key(h.version)),
                h.name,
            ),
        )
        candidates.extend(h.id for h in others)
    for host_id in candidates:
        if only is not None and host_id != only:
            continue
        host = pool.host(host_id)
        room = host.memory_free - int(host.capacity * headroom)
        if fits(host_id) and ledger.try_reserve(host_id, room, vm.memory):
            return host_id
    return None
