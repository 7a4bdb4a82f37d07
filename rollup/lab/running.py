"""A running lab: the simulated pool, its XenAPI listeners and its hosts' machines.

`rollup lab up` runs one in the foreground; an inventory with `rollup_lab` makes rollup
start one in-process (`start_for`). Either way the lab writes an Ansible inventory that
rollup and ansible-playbook can use as they would a real pool's.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml

from rollup.errors import BadInput
from rollup.lab.faults import Faults, load_faults
from rollup.lab.generator import generate
from rollup.lab.hosts import SSHD, LabMachine
from rollup.lab.pool import LabPool
from rollup.lab.xapi import XapiServer
from rollup.policy import LabSpec
from rollup.remote import RemoteHost

TARGET_VERSION = "8.3.0"  # what the lab's patch installs unless told otherwise
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


class RunningLab:
    def __init__(
        self,
        pool: LabPool,
        server: XapiServer,
        machines: dict[str, LabMachine],
        directory: Path,
        password: str,
        faults: str | None,
    ) -> None:
        self.pool = pool
        self.server = server
        self.machines = machines
        self.directory = directory
        self.user = "root"
        self.password = password
        self.faults_path = Path(faults).resolve() if faults else None
        self._faults_mtime: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    # -- starting and stopping ------------------------------------------------------------

    @classmethod
    def start(
        cls,
        hosts: int,
        vms: int,
        seed: int,
        speed: float,
        ssh: bool | str,
        port: int,
        directory: Path,
        faults: str | None = None,
        network: str | None = None,
        fill: tuple[float, float] = (0.5, 0.75),
    ) -> RunningLab:
        directory = directory.resolve()
        use_ssh = SSHD.exists() if ssh == "auto" else bool(ssh)
        prefix = _prefix(network) if network else _free_network(use_ssh)
        layout = generate(hosts, vms, seed, address_prefix=prefix, fill=fill)
        # A lab starts fresh: what an earlier lab in this directory installed is gone.
        shutil.rmtree(directory / "hosts", ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        machines: dict[str, LabMachine] = {}
        pool: LabPool | None = None
        server: XapiServer | None = None
        try:
            for spec in layout.hosts:
                machines[spec.name] = LabMachine(
                    spec.name, directory, address=spec.address if use_ssh else None
                )
            initial = load_faults(faults) if faults else Faults()
            pool = LabPool(layout, speed=speed, machines=dict(machines), faults=initial)
            for spec in layout.hosts:
                machines[spec.name].power_on(str(uuid.uuid4()), spec.version)
            password = secrets.token_urlsafe(12)
            server = XapiServer(pool, port=port, user="root", password=password)
            server.start()
        except BaseException:
            if server is not None:
                server.stop()
            if pool is not None:
                pool.close()
            for machine in machines.values():
                machine.close()
            raise
        lab = cls(pool, server, machines, directory, password, faults)
        lab.poll_faults()
        lab.write_inventory(directory / "inventory.yml")
        if faults:
            lab._watcher = threading.Thread(
                target=lab._watch_faults, name="lab-faults", daemon=True
            )
            lab._watcher.start()
        return lab

    @classmethod
    def start_for(cls, spec: LabSpec, directory: Path) -> RunningLab:
        """The in-process lab an inventory asks for."""
        return cls.start(
            hosts=spec.hosts,
            vms=spec.vms,
            seed=spec.seed,
            speed=spec.speed,
            ssh=spec.ssh,
            port=0,
            directory=directory,
            faults=spec.faults,
        )

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
        self.pool.close()
        for machine in self.machines.values():
            machine.close()

    # -- faults ---------------------------------------------------------------------------

    def poll_faults(self) -> None:
        """Re-read the fault file when it changed, so a drill can clear a fault live."""
        if self.faults_path is None:
            return
        try:
            mtime = self.faults_path.stat().st_mtime
        except FileNotFoundError:
            mtime = -1.0
        if mtime == self._faults_mtime:
            return
        self._faults_mtime = mtime
        faults = load_faults(self.faults_path) if mtime >= 0 else Faults()
        self.pool.set_faults(faults)

    def _watch_faults(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(BadInput):
                self.poll_faults()

    # -- what users and rollup need to reach it -------------------------------------------

    def remote_hosts(self) -> dict[str, RemoteHost]:
        return {name: machine.remote_host() for name, machine in self.machines.items()}

    def inventory(self) -> dict[str, Any]:
        group = {
            "vars": {
                "rollup_driver": "xenapi",
                "rollup_api_url": self.url,
                "rollup_api_user": self.user,
                "rollup_api_password": self.password,
                "rollup_target_version": TARGET_VERSION,
                "rollup_playbook": str(PLAYBOOKS / "lab-patch.yml"),
                "rollup_reboot": "if-required",
                "rollup_unmovable": "shutdown-restart",
            },
            "hosts": {name: m.inventory_vars() for name, m in self.machines.items()},
        }
        return {"all": {"children": {_group_name(self.pool.name): group}}}

    def write_inventory(self, path: Path) -> None:
        text = (
            "# Written by `rollup lab up`: the lab pool as an Ansible inventory.\n"
            "# It holds the lab's API password: keep it to yourself.\n"
            + yaml.safe_dump(self.inventory(), sort_keys=False)
        )
        path.write_text(text)
        path.chmod(0o600)

    def banner(self) -> str:
        hosts = ", ".join(
            f"{name} {m.address or 'local'}" + (f":{m.port}" if m.address and m.port != 22 else "")
            for name, m in self.machines.items()
        )
        inventory = self.directory / "inventory.yml"
        return (
            f"lab pool {self.pool.name}: {len(self.machines)} hosts, {len(self.pool.vms)} VMs,"
            f" time x{self.pool.speed:g}\n"
            f"  XenAPI   {self.url}  user {self.user}  password {self.password}\n"
            f"  hosts    {hosts}\n"
            f"  inventory {inventory}\n"
            f"  try      rollup plan {inventory}\n"
            "Ctrl-C stops the lab."
        )


def _group_name(pool_name: str) -> str:
    return pool_name.replace("-", "_")


def _prefix(network: str) -> str:
    parts = network.split(".")
    if len(parts) != 4 or parts[0] != "127" or not all(p.isdigit() for p in parts):
        raise BadInput(f"--network {network} is not a loopback /24: use e.g. 127.0.10.0")
    return ".".join(parts[:3]) + "."


def _free_network(ssh: bool) -> str:
    """A loopback /24 no other lab uses (in-process labs must not clash with `lab up`)."""
    for third in range(11, 250):
        prefix = f"127.0.{third}."
        if not _listening(prefix + "1", 22 if ssh else 0):
            return prefix
    raise BadInput("no free loopback network for the lab: stop other labs first")


def _listening(address: str, port: int) -> bool:
    if port == 0:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((address, port)) == 0
