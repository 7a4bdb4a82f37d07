"""Fixtures for the lab tests: pools served over real HTTP on 127.S.20.x, read with XenAPI."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import XenAPI

from rollup.lab.faults import Faults
from rollup.lab.generator import dom0_memory, overhead
from rollup.lab.layout import HostSpec, Layout, PinKind, VMSpec
from rollup.lab.machine import MemoryMachine
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer
from rollup.model import GiB
from tests import loopback

PREFIX = loopback.prefix(20)
FAST = 1000.0


def host(name: str, gib: int = 32, version: str = "8.2.1") -> HostSpec:
    index = int(name.lstrip("h"))
    total = gib * GiB
    return HostSpec(
        name=name,
        uuid=f"00000000-0000-4000-8000-{index:012d}",
        address=f"{PREFIX}{index}",
        memory_total=total,
        memory_overhead=overhead(total),
        version=version,
        dom0_uuid=f"00000000-0000-4000-8001-{index:012d}",
        dom0_memory=dom0_memory(total),
        metrics_uuid=f"00000000-0000-4000-8002-{index:012d}",
        local_sr_uuid=f"00000000-0000-4000-8003-{index:012d}",
    )


def vm(name: str, gib: float, on: str | None, pin: PinKind | None = None, ha: str = "") -> VMSpec:
    memory = int(gib * GiB)
    return VMSpec(
        name=name,
        uuid=f"00000000-0000-4000-9000-{zlib.crc32(name.encode()):012d}",
        memory=memory,
        memory_overhead=overhead(memory),
        power_state="Running" if on else "Halted",
        host=on,
        affinity=on,
        ha_priority=ha,
        pin=pin,
        pin_host=on if pin else None,
    )


def layout(hosts: list[HostSpec], vms: list[VMSpec]) -> Layout:
    return Layout(
        pool_name="test",
        pool_uuid="00000000-0000-4000-a000-000000000001",
        shared_sr_uuid="00000000-0000-4000-a000-000000000002",
        master=hosts[0].name,
        hosts=tuple(hosts),
        vms=tuple(vms),
    )


@dataclass
class Lab:
    pool: LabPool
    server: XapiServer
    session: XenAPI.Session
    machines: dict[str, MemoryMachine]

    @property
    def x(self) -> object:
        return self.session.xenapi

    def host(self, name: str) -> str:
        return self.session.xenapi.host.get_by_name_label(name)[0]

    def vm(self, name: str) -> str:
        return self.session.xenapi.VM.get_by_name_label(name)[0]

    def resident(self, name: str) -> list[str]:
        x = self.session.xenapi
        return sorted(
            x.VM.get_name_label(ref)
            for ref in x.host.get_resident_VMs(self.host(name))
            if not x.VM.get_is_control_domain(ref)
        )

    def free(self, name: str) -> int:
        x = self.session.xenapi
        return int(x.host_metrics.get_memory_free(x.host.get_metrics(self.host(name))))


MakeLab = Callable[..., Lab]


@pytest.fixture
def make_lab() -> Iterator[MakeLab]:
    made: list[Lab] = []

    def make(
        pool_layout: Layout, speed: float = FAST, faults: Faults | None = None, **options: object
    ) -> Lab:
        machines = {spec.name: MemoryMachine(spec.name) for spec in pool_layout.hosts}
        pool = LabPool(pool_layout, speed=speed, machines=machines, faults=faults, **options)
        server = XapiServer(pool, user="root", password="lab")
        server.start()
        session = XenAPI.Session(server.url)
        session.xenapi.login_with_password("root", "lab", "2.21", "rollup-tests")
        lab = Lab(pool, server, session, machines)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.server.stop()
        lab.pool.close()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll until `predicate()` is truthy; generous bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def failure(call: Callable[[], object]) -> list[str]:
    """The ErrorDescription of a call that must fail."""
    with pytest.raises(XenAPI.Failure) as info:
        call()
    return info.value.details
