"""A Proxmox VE lab (real sshd per node, the PVE API over HTTPS) and proxmoxer to check it.

The checks ask the lab through proxmoxer, the client Proxmox users script with, not
through rollup's driver: what a run did is judged by what the cluster's API says.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proxmoxer
import pytest

from tests import loopback
from tests.rollout.conftest import LabDir, start_lab

# 127.S.200 upward: other packages' labs keep other /24s (tests/loopback.py).
_networks = itertools.count(200)


@dataclass
class PveLab(LabDir):
    """A Proxmox VE lab cluster, read through proxmoxer."""

    def api(self, node: int = 1) -> Any:
        """proxmoxer on the `node`-th node, with the lab's API token and CA."""
        user, _, token = self.running.user.partition("!")
        address = list(self.running.pool.hosts.values())[node - 1].address
        return proxmoxer.ProxmoxAPI(
            address,
            port=self.running.server.port,
            user=user,
            token_name=token,
            token_value=self.running.password,
            verify_ssl=self.running.ca_file,
        )

    def pending(self) -> dict[str, list[str]]:
        api = self.api()
        return {
            n["node"]: [u["Package"] for u in api.nodes(n["node"]).apt.update.get()]
            for n in api.nodes.get()
        }

    def placement(self) -> dict[str, str]:
        """Where each running guest runs, by name."""
        return {
            vm["name"]: vm["node"]
            for vm in self.api().cluster.resources.get(type="vm")
            if vm["status"] == "running"
        }

    def in_maintenance(self) -> set[str]:
        found = self.api().cluster.ha.status.manager_status.get()["manager_status"]
        return {node for node, mode in found["node_status"].items() if mode == "maintenance"}

    def noout(self) -> bool:
        return bool(self.api().cluster.ceph.flags("noout").get())


def start_pve_lab(directory: Path, hosts: int = 3, vms: int = 12) -> PveLab:
    lab = start_lab(
        directory,
        hosts=hosts,
        vms=vms,
        network=loopback.network(next(_networks)),
        flavor="proxmox",
        release=None,
    )
    return PveLab(lab.running, lab.dir, lab.state, lab.faults)


@pytest.fixture
def pve(tmp_path: Path) -> Iterator[PveLab]:
    lab = start_pve_lab(tmp_path)
    try:
        yield lab
    finally:
        lab.running.stop()
