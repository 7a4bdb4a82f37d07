"""Builders and hypothesis strategies for model.Pool and model.Policy, for any test.

`make_pool` builds a readable pool from a layout like {"h1": [8, 4], "h2": [16]} (GiB of
each running VM per host). `pools()` draws random pools, including nearly full ones, with
mixed versions, halted and unmovable VMs, disabled or dead hosts; `policies()` draws
policies to plan them with. Host ids are "uuid-<name>" so tests notice a name used as id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import strategies as st

from rollup.model import (
    VM,
    Blocker,
    GiB,
    Host,
    Lock,
    MiB,
    Policy,
    Pool,
)

BLOCKERS: dict[str, Blocker] = {
    "local-sr": Blocker(
        "local-sr", "VM_REQUIRES_SR", ("vm", "sr"), "disk on host-local SR 'Local storage'"
    ),
    "pci": Blocker("pci", "VM_HAS_PCI_ATTACHED", ("vm",), "PCI device passed through"),
    "vgpu": Blocker("vgpu", "VM_HAS_VGPU", ("vm",), "vGPU attached"),
    "sriov": Blocker("sriov", "VM_HAS_SRIOV_VIF", ("vm",), "SR-IOV network interface"),
}
OVERHEAD = GiB


def host_id(name: str) -> str:
    return f"uuid-{name}"


def vm_id(name: str) -> str:
    return f"uuid-{name}"


def make_host(
    name: str,
    capacity: int,
    version: str = "8.2.1",
    *,
    master: bool = False,
    enabled: bool = True,
    live: bool = True,
    used: int = 0,
) -> Host:
    return Host(
        id=host_id(name),
        name=name,
        address=f"10.0.0.{sum(map(ord, name)) % 250 + 1}",
        memory_total=capacity + OVERHEAD,
        memory_overhead=OVERHEAD,
        memory_free=capacity - used,
        version=version,
        platform_version=version,
        enabled=enabled,
        live=live,
        is_master=master,
        boot_mark="1700000000",
    )


def make_pool(
    layout: Mapping[str, Sequence[float]],
    capacity: float | Mapping[str, float] = 64,
    versions: str | Mapping[str, str] = "8.2.1",
    *,
    master: str | None = None,
    pinned: Mapping[str, str] | None = None,
    halted: Sequence[float] = (),
    disabled: Sequence[str] = (),
    dead: Sequence[str] = (),
    ha: bool = False,
    lock: Lock | None = None,
) -> Pool:
    """A pool from {host name: [GiB of each running VM]}; VMs are named "<host>-vm<i>".

    `capacity` and `versions` are one value or one per host name; `master` defaults to the
    first host; `pinned` maps VM names to a blocker kind ("local-sr", "pci", ...).
    """
    pinned = pinned or {}
    names = list(layout)
    master = master or names[0]
    hosts: list[Host] = []
    vms: list[VM] = []
    for name in names:
        cap = capacity[name] if isinstance(capacity, Mapping) else capacity
        version = versions if isinstance(versions, str) else versions[name]
        guests = [int(gib * GiB) for gib in layout[name]]
        hosts.append(
            make_host(
                name,
                int(cap * GiB),
                version,
                master=name == master,
                enabled=name not in disabled,
                live=name not in dead,
                used=sum(guests),
            )
        )
        for i, memory in enumerate(guests):
            vm_name = f"{name}-vm{i}"
            blockers = (BLOCKERS[pinned[vm_name]],) if vm_name in pinned else ()
            vms.append(
                VM(vm_id(vm_name), vm_name, memory, "Running", host_id(name), blockers=blockers)
            )
    for i, gib in enumerate(halted):
        vms.append(VM(vm_id(f"halted{i}"), f"halted{i}", int(gib * GiB), "Halted", None))
    return Pool(
        id="uuid-pool",
        name="pool",
        driver="xenapi",
        master=host_id(master),
        ha_enabled=ha,
        hosts=tuple(hosts),
        vms=tuple(vms),
        lock=lock,
    )


VERSIONS = ("8.2.1", "8.3.0")
# True one time in 20; in the middle of the list, because hypothesis favours the ends.
RARELY = st.sampled_from([False] * 10 + [True] + [False] * 9)


@st.composite
def pools(
    draw: st.DrawFn,
    min_hosts: int = 1,
    max_hosts: int = 7,
    max_vms_per_host: int = 8,
    pinned: bool = True,
    broken_hosts: bool = True,
) -> Pool:
    """Random pools; each host is filled to a random share of its capacity, up to full."""
    count = draw(st.integers(min_hosts, max_hosts))
    master = draw(st.integers(0, count - 1))
    hosts: list[Host] = []
    vms: list[VM] = []
    for index in range(count):
        name = f"h{index}"
        capacity = draw(st.integers(4, 64)) * GiB
        fill = draw(st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]))
        budget = int(capacity * fill)
        used = 0
        for n in range(draw(st.integers(0, max_vms_per_host))):
            memory = draw(st.integers(256, 16 * 1024)) * MiB
            if used + memory > budget:
                break
            state = draw(st.sampled_from(["Running"] * 6 + ["Halted"]))
            blockers: tuple[Blocker, ...] = ()
            if pinned and draw(RARELY):
                blockers = (BLOCKERS[draw(st.sampled_from(sorted(BLOCKERS)))],)
            vm_name = f"{name}-vm{n}"
            running = state == "Running"
            vms.append(
                VM(
                    vm_id(vm_name),
                    vm_name,
                    memory,
                    state,
                    host_id(name) if running else None,
                    blockers=blockers,
                )
            )
            used += memory if running else 0
        broken = broken_hosts and draw(RARELY)
        hosts.append(
            make_host(
                name,
                capacity,
                draw(st.sampled_from(VERSIONS)),
                master=index == master,
                enabled=not (broken and draw(st.booleans())),
                live=not broken or draw(st.booleans()),
                used=used,
            )
        )
    # Shuffle the host tuple so that nothing relies on the master being listed first.
    hosts = draw(st.permutations(hosts))
    return Pool(
        id="uuid-pool",
        name="pool",
        driver="xenapi",
        master=host_id(f"h{master}"),
        ha_enabled=draw(st.booleans()),
        hosts=tuple(hosts),
        vms=tuple(vms),
    )


@st.composite
def policies(draw: st.DrawFn, pool: Pool | None = None) -> Policy:
    names = tuple(h.name for h in pool.hosts) if pool else ()
    return Policy(
        target_version=draw(st.sampled_from([None, *VERSIONS])),
        strategy=draw(st.sampled_from(["return", "upgraded-first"])),
        order=draw(st.sampled_from(["inventory", "least-loaded"])),
        host_order=draw(st.permutations(names)) if names else (),
        max_parallel_hosts=draw(st.sampled_from([1, 2, 3, "auto"])),
        headroom=draw(st.sampled_from([0.0, 0.1, 0.25])),
        # Racks for some hosts (or none): batches must never mix them.
        zones=tuple(
            (name, zone)
            for name in names
            if (zone := draw(st.sampled_from(["", "rack-a", "rack-b"])))
        ),
        parallel_migrations=draw(st.integers(1, 4)),
        unmovable=draw(st.sampled_from(["fail", "skip-host", "shutdown-restart"])),
        canary=draw(st.integers(0, 2)),
    )


@st.composite
def pools_and_policies(draw: st.DrawFn, **pool_options: int | bool) -> tuple[Pool, Policy]:
    pool = draw(pools(**pool_options))  # type: ignore[arg-type]
    return pool, draw(policies(pool))
