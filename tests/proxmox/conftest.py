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
import yaml

from rollup.lab.xapi.running import RunningLab
from tests import loopback
from tests.rollout.conftest import run_rollup

# 127.S.200 upward: other packages' labs keep other /24s (tests/loopback.py).
_networks = itertools.count(200)
SPEED = 200.0


@dataclass
class PveLab:
    running: RunningLab
    dir: Path
    state: Path
    faults: Path

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

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
        return {
            e["node"]
            for e in self.api().cluster.ha.status.current.get()
            if e.get("type") == "lrm" and e.get("mode") == "maintenance"
        }

    def noout(self) -> bool:
        return bool(self.api().cluster.ceph.flags("noout").get())

    def set_faults(self, faults: dict[str, Any]) -> None:
        self.faults.write_text(yaml.safe_dump(faults))
        self.running.poll_faults()

    def write_inventory(self, drop: tuple[str, ...] = (), **group_vars: Any) -> Path:
        data = yaml.safe_load(self.inventory.read_text())
        group = next(iter(data["all"]["children"].values()))
        group["vars"].update(group_vars)
        for name in drop:
            group["vars"].pop(name)
        path = self.dir / "inventory-custom.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    def rollup(self, *args: str, timeout: float = 240) -> Any:
        return run_rollup(self.state, *args, timeout=timeout)


def start_pve_lab(directory: Path, hosts: int = 3, vms: int = 12) -> PveLab:
    directory.mkdir(parents=True, exist_ok=True)
    faults = directory / "faults.yml"
    faults.write_text("{}\n")
    running = RunningLab.start(
        hosts=hosts,
        vms=vms,
        seed=1,
        speed=SPEED,
        ssh=True,
        port=0,
        directory=directory / "lab",
        faults=str(faults),
        network=loopback.network(next(_networks)),
        flavor="proxmox",
    )
    return PveLab(running, directory / "lab", directory / "state", faults)


@pytest.fixture
def pve(tmp_path: Path) -> Iterator[PveLab]:
    lab = start_pve_lab(tmp_path)
    try:
        yield lab
    finally:
        lab.running.stop()
