"""What a lab pool is made of before it runs: hosts, VMs and storage, as plain data.

The generator (lab/generator.py) builds a Layout from a seed; LabPool (lab/pool.py) brings
it to life. Hosts and VMs are referred to by name inside a layout; uuids are fixed here so
that the same seed always gives the same pool, uuids included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rollup.lab import Flavor

PinKind = Literal["local-sr", "pci", "vgpu", "sriov"]


@dataclass(frozen=True)
class HostSpec:
    name: str
    uuid: str
    address: str
    memory_total: int  # bytes
    memory_overhead: int  # bytes Xen keeps for itself (not the control domain)
    version: str  # product version, e.g. "8.2.1"
    dom0_uuid: str
    dom0_memory: int  # control domain memory_static_max, bytes
    metrics_uuid: str
    local_sr_uuid: str


@dataclass(frozen=True)
class VMSpec:
    name: str
    uuid: str
    memory: int  # memory_static_max, bytes
    memory_overhead: int  # bytes Xen needs beside the guest's memory
    power_state: Literal["Running", "Halted"]
    host: str | None  # name of the host it runs on; None when halted
    affinity: str | None = None  # name of its home host
    ha_priority: str = ""  # "", "restart" or "best-effort"
    pin: PinKind | None = None  # what keeps it on one host
    pin_host: str | None = None  # the host whose local SR / PCI device / GPU / NIC it uses


@dataclass(frozen=True)
class Layout:
    pool_name: str
    pool_uuid: str
    shared_sr_uuid: str
    master: str  # host name
    hosts: tuple[HostSpec, ...]
    vms: tuple[VMSpec, ...]
    flavor: Flavor = "xcp-ng"

    def footprint(self, vm: VMSpec) -> int:
        return vm.memory + vm.memory_overhead
