"""Deterministic generator of realistic lab pools: `generate(hosts=N, vms=M, seed=S)`.

Same arguments, same Layout: names, uuids, sizes and placement all come from one seeded
random stream. What a generated pool looks like:

- hosts `h1..hN` at `address_prefix + "1" .. + "N"` (default 127.0.10.1..N), all at
  product version "8.2.1", `h1` the master, one host-local SR each, one shared SR;
- VMs of 1 to 16 GiB (mostly small ones), each with a memory overhead of ~1 %;
- the running VMs fill the pool to a ratio drawn from `fill` (default 50-75 %) of its
  guest capacity; with at least four VMs per host the ratio lands in that range (the host
  size is chosen to match, in 256 MiB steps);
- about 10 % of the VMs are halted and about 8 % are pinned (a disk on a host-local SR,
  PCI passthrough, a vGPU or an SR-IOV NIC);
- every running VM's affinity (home host) is the host it runs on; ~30 % are HA-protected.

Note for callers: a pool can only be upgraded one host at a time without stopping VMs
when the others can hold its load, i.e. roughly fill <= (N-1)/N; a 3-host pool 75 % full
cannot. Pass `fill=(0.5, 0.6)` for a small demo pool that can be fully upgraded.
"""

from __future__ import annotations

import random
import uuid

from rollup.errors import BadInput
from rollup.lab import Flavor
from rollup.lab.layout import HostSpec, Layout, PinKind, VMSpec
from rollup.model import GiB, MiB

VM_SIZES_GIB = (1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 16)  # small VMs are the common case
ROLES = (
    "web", "db", "app", "cache", "mail", "dns", "ci", "git", "ldap", "proxy",
    "mon", "log", "vpn", "backup", "build", "api", "queue", "search", "files", "wiki",
)  # fmt: skip
PIN_KINDS: tuple[PinKind, ...] = ("local-sr", "local-sr", "pci", "vgpu", "sriov")
DEFAULT_VERSION = "8.2.1"


def overhead(memory: int) -> int:
    """Xen's per-VM overhead in the lab: 1 % of the memory, rounded to MiB (at least 1 MiB)."""
    return max(1, round(memory / 100 / MiB)) * MiB


def dom0_memory(memory_total: int) -> int:
    """Control domain size as XCP-ng sizes it: 1 GiB + 5 % of the host, at most 8 GiB."""
    return min(8 * GiB, GiB + round(memory_total * 0.05 / GiB) * GiB)


def guest_capacity(memory_total: int) -> int:
    """Bytes left for guests on an empty host (see the accounting rules in lab/pool.py)."""
    dom0 = dom0_memory(memory_total)
    return memory_total - overhead(memory_total) - (dom0 + overhead(dom0))


def generate(
    hosts: int = 3,
    vms: int = 12,
    seed: int = 0,
    address_prefix: str = "127.0.10.",
    version: str = DEFAULT_VERSION,
    fill: tuple[float, float] = (0.5, 0.75),
    flavor: Flavor = "xcp-ng",
) -> Layout:
    if hosts < 1 or hosts > 250:
        raise BadInput(f"lab pool: hosts={hosts} is out of range; use 1 to 250 hosts")
    if vms < 0:
        raise BadInput(f"lab pool: vms={vms} is negative; use 0 or more VMs")
    low, high = fill
    if not 0 < low <= high < 1:
        raise BadInput(f"lab pool: fill={fill} is not a range in (0, 1); use e.g. (0.5, 0.75)")
    rng = random.Random(seed)

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    sizes = [rng.choice(VM_SIZES_GIB) * GiB for _ in range(vms)]
    halted = set(rng.sample(range(vms), k=round(vms * 0.10))) if vms >= 3 else set()
    pinned = set(rng.sample(range(vms), k=max(1, round(vms * 0.08)))) if vms >= 3 else set()
    # A pool of N hosts can only be emptied one host at a time below (N-1)/N full.
    target = rng.uniform(low, max(low, min(high, (hosts - 1) / hosts - 0.05)))
    running_load = sum(s + overhead(s) for i, s in enumerate(sizes) if i not in halted)
    memory_total = _host_size(running_load, hosts, target, low)
    # In a small pool one 16 GiB VM could need a host so big the pool would be nearly
    # empty: shrink such VMs to what the target's hosts hold, halving down to 1 GiB.
    while any(s + overhead(s) > guest_capacity(memory_total) for s in sizes):
        sizes = [_shrink(s, guest_capacity(memory_total)) for s in sizes]
        running_load = sum(s + overhead(s) for i, s in enumerate(sizes) if i not in halted)
        memory_total = _host_size(running_load, hosts, target, low)

    names = [f"h{i + 1}" for i in range(hosts)]
    # Draw every random choice before placing, so placement can retry with bigger hosts
    # without changing the names, uuids or flags the seed gave.
    roles = [rng.choice(ROLES) for _ in range(vms)]
    pins = [rng.choice(PIN_KINDS) if i in pinned else None for i in range(vms)]
    ha = ["restart" if rng.random() < 0.3 else "" for _ in range(vms)]
    halted_homes = [rng.choice(names) for _ in range(vms)]
    vm_uuids = [new_uuid() for _ in range(vms)]
    homes = _place(sizes, halted, names, memory_total)
    while homes is None:
        # The VMs do not pack at this fill: halve the biggest running one (bigger hosts
        # would leave the pool too empty), down to 1 GiB VMs, then grow the hosts.
        running = [i for i in range(vms) if i not in halted and sizes[i] > GiB]
        if running:
            biggest = max(running, key=lambda i: (sizes[i], -i))
            sizes[biggest] //= 2
            load = sum(s + overhead(s) for i, s in enumerate(sizes) if i not in halted)
            memory_total = _host_size(load, hosts, target, low)
        else:
            memory_total += 256 * MiB
        homes = _place(sizes, halted, names, memory_total)
    # A pool admins keep is N+1: any one host can be emptied onto the others. Without
    # that the lab would teach nothing but refusals, so halve the VM that does not fit
    # (the fill stays in range) until every host can be evacuated.
    while (stuck := _unevacuable(sizes, halted, pinned, homes, names, memory_total)) is not None:
        if sizes[stuck] > GiB:
            sizes[stuck] //= 2
            load = sum(s + overhead(s) for i, s in enumerate(sizes) if i not in halted)
            memory_total = _host_size(load, hosts, target, low)
        else:
            memory_total += 256 * MiB
        homes = _place(sizes, halted, names, memory_total)
        while homes is None:
            memory_total += 256 * MiB
            homes = _place(sizes, halted, names, memory_total)
    host_specs = tuple(
        HostSpec(
            name=name,
            uuid=new_uuid(),
            address=f"{address_prefix}{i + 1}",
            memory_total=memory_total,
            memory_overhead=overhead(memory_total),
            version=version,
            dom0_uuid=new_uuid(),
            dom0_memory=dom0_memory(memory_total),
            metrics_uuid=new_uuid(),
            local_sr_uuid=new_uuid(),
        )
        for i, name in enumerate(names)
    )
    counters: dict[str, int] = {}
    vm_specs: list[VMSpec] = []
    for i, size in enumerate(sizes):
        counters[roles[i]] = counters.get(roles[i], 0) + 1
        home = halted_homes[i] if i in halted else homes[i]
        vm_specs.append(
            VMSpec(
                name=f"{roles[i]}-{counters[roles[i]]:02d}",
                uuid=vm_uuids[i],
                memory=size,
                memory_overhead=overhead(size),
                power_state="Halted" if i in halted else "Running",
                host=None if i in halted else home,
                affinity=home,
                ha_priority=ha[i],
                pin=pins[i],
                pin_host=home if pins[i] else None,
            )
        )
    vm_specs.sort(key=lambda v: (v.name.rsplit("-", 1)[0], int(v.name.rsplit("-", 1)[1])))
    return Layout(
        pool_name=f"lab-{seed}",
        pool_uuid=new_uuid(),
        shared_sr_uuid=new_uuid(),
        master=names[0],
        hosts=host_specs,
        vms=tuple(vm_specs),
        flavor=flavor,
    )


def _unevacuable(
    sizes: list[int],
    halted: set[int],
    pinned: set[int],
    homes: dict[int, str],
    names: list[str],
    memory_total: int,
) -> int | None:
    """The biggest VM that has no place when its host is emptied (best fit), if any."""
    capacity = guest_capacity(memory_total)
    used = dict.fromkeys(names, 0)
    for i, home in homes.items():
        used[home] += sizes[i] + overhead(sizes[i])
    for name in names:
        free = {other: capacity - used[other] for other in names if other != name}
        leaving = sorted(
            (i for i, home in homes.items() if home == name and i not in pinned),
            key=lambda i: (-sizes[i], i),
        )
        for i in leaving:
            need = sizes[i] + overhead(sizes[i])
            fits = [other for other in free if free[other] >= need]
            if not fits:
                return i
            best = min(fits, key=lambda other: (free[other], other))
            free[best] -= need
    return None


def _shrink(size: int, capacity: int) -> int:
    while size > GiB and size + overhead(size) > capacity:
        size //= 2
    return size


def _host_size(running_load: int, hosts: int, target: float, low: float) -> int:
    """The smallest host (in 256 MiB steps) whose pool fill is at most `target`, but at least
    `low`: coarse steps could otherwise leave a small pool emptier than asked."""
    step = 256 * MiB
    total = 4 * GiB
    while running_load > target * hosts * guest_capacity(total):
        total += step
    while total > 4 * GiB and running_load < low * hosts * guest_capacity(total):
        total -= step
    return total


def _place(
    sizes: list[int], halted: set[int], names: list[str], memory_total: int
) -> dict[int, str] | None:
    """Largest first onto the emptiest host (an even spread, as a balancer leaves a pool);
    None when some VM does not fit."""
    free = dict.fromkeys(names, guest_capacity(memory_total))
    homes: dict[int, str] = {}
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        if i in halted:
            continue
        home = max(names, key=lambda n: (free[n], -names.index(n)))
        free[home] -= sizes[i] + overhead(sizes[i])
        if free[home] < 0:
            return None
        homes[i] = home
    return homes
