"""The lab: a simulated XenServer/XCP-ng pool that speaks the real XenAPI protocol.

`LabSpec` is what an inventory asks for (`rollup_lab`); the rest of rollup knows the lab
through it and through the lab's XenAPI, as it knows a real pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LabSsh = Literal["auto", True, False]
# XCP-ng (patched through its updater.py plugin), XenServer 8 (/updates, guidances) or
# Proxmox VE (its REST API, lab/proxmox/; patched by apt over SSH).
Flavor = Literal["xcp-ng", "xenserver", "proxmox"]


@dataclass(frozen=True)
class LabSpec:
    """The embedded lab pool an inventory asks for (`rollup_lab`)."""

    hosts: int = 3
    vms: int = 12
    seed: int = 0
    speed: float = 1.0  # how much faster than real time the lab's clock runs
    ssh: LabSsh = "auto"  # real sshd per host, local state dirs, or whichever works here
    faults: str | None = None  # absolute path of a fault-injection file
    flavor: Flavor = "xcp-ng"  # XCP-ng (updater.py), XenServer 8 (/updates), Proxmox VE
    release: str | None = None  # the hosts' version at start; None: the flavor's current
    up_to_date: bool = False  # no host starts with updates pending
    fill: float | None = None  # how full the running VMs make the pool; None: 50-75 %
