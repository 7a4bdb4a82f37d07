"""A running lab: the simulated pool, its XenAPI listeners and its hosts' machines.

`rollup lab up` runs one in the foreground; an inventory with `rollup_lab` makes rollup
start one in-process (`start_for`). Either way the lab writes an Ansible inventory that
rollup and ansible-playbook can use as they would a real pool's.

An in-process lab outlives rollup: it keeps its pool's state in `pool-state.json` beside
its hosts' disks (lab/persistence.py has the rule), and `start_for(..., restore=True)`
(what `rollup resume` asks for) brings that pool back; otherwise a lab starts fresh.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import yaml

from rollup import bundled
from rollup.errors import BadInput, LabStateUnusable, RemoteError
from rollup.lab import LabSpec
from rollup.lab.address_holder import taken
from rollup.lab.faults import Faults, load_faults
from rollup.lab.generator import generate
from rollup.lab.hosts import LabMachine, stop_stale_daemons
from rollup.lab.layout import Layout
from rollup.lab.reaper import Reaper
from rollup.lab.sshd import SSHD
from rollup.lab.xapi import persistence
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer
from rollup.remote import RemoteHost

TARGET_VERSION = "8.3.0"  # what the lab's patch installs unless told otherwise

log = logging.getLogger("rollup")
_BIND_FAILED = re.compile(r"Bind to port (?P<port>\d+) on (?P<address>[\d.]+) failed")


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
        self._saver: persistence.Saver | None = None
        self.restored = False  # the pool came back from pool-state.json
        self._reaper: Reaper | None = None

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
        persist: bool = False,
        restore: bool = False,
    ) -> RunningLab:
        """Start a lab; `persist`: keep its state in `directory` (lab/persistence.py);
        `restore`: bring back the state kept there if it is this lab's, else start fresh."""
        directory = directory.resolve()
        use_ssh = SSHD.exists() if ssh == "auto" else bool(ssh)
        reaper = Reaper.start(directory)  # from here on, nothing it starts outlives us
        try:
            lab = cls._start_on_free_network(
                directory, reaper, network, use_ssh, restore,
                hosts=hosts, vms=vms, seed=seed, fill=fill,
                speed=speed, port=port, faults=faults, persist=persist,
            )  # fmt: skip
        except BaseException:
            reaper.sweep_and_release()
            raise
        lab._reaper = reaper
        return lab

    @classmethod
    def _start_on_free_network(
        cls,
        directory: Path,
        reaper: Reaper,
        network: str | None,
        use_ssh: bool,
        restore: bool,
        *,
        hosts: int,
        vms: int,
        seed: int,
        fill: tuple[float, float],
        **options: Any,
    ) -> RunningLab:
        """Start on `network`, else on the first loopback /24 whose addresses bind."""
        tried: set[str] = set()
        while True:
            prefix = _prefix(network) if network else _free_network(use_ssh, hosts, tried)
            try:
                return cls._start_fresh_or_restored(
                    directory, generate(hosts, vms, seed, address_prefix=prefix, fill=fill),
                    persistence.identity(hosts, vms, seed, fill), restore,
                    use_ssh=use_ssh, **options,
                )  # fmt: skip
            except RemoteError as error:
                # Another process took an address between our probe and sshd's bind.
                bind = _BIND_FAILED.search(str(error))
                if bind is None:
                    raise
                if network:
                    raise BadInput(taken(bind["address"], int(bind["port"]), "--network")) from None
                log.info("lab: %s is taken, trying the next network", bind["address"])
                tried.add(prefix)

    @classmethod
    def _start_fresh_or_restored(
        cls,
        directory: Path,
        layout: Layout,
        spec: dict[str, Any],
        restore: bool,
        **options: Any,
    ) -> RunningLab:
        state: dict[str, Any] | None = None
        if restore:
            path = directory / persistence.STATE_FILE
            state, why = persistence.load(path, spec, layout.pool_uuid)
            if state is None:
                log.warning("lab pool %s: %s: starting a fresh lab", layout.pool_name, why)
        build = functools.partial(cls._start, layout, directory, spec, **options)
        try:
            return build(state)
        except LabStateUnusable as error:
            log.warning("lab pool %s: %s: starting a fresh lab", layout.pool_name, error)
            return build(None)

    @classmethod
    def _start(
        cls,
        layout: Layout,
        directory: Path,
        spec: dict[str, Any],
        state: dict[str, Any] | None,
        *,
        speed: float,
        use_ssh: bool,
        port: int,
        faults: str | None,
        persist: bool,
    ) -> RunningLab:
        stop_stale_daemons(directory)
        if state is None:
            # A lab starts fresh: what an earlier lab in this directory installed is gone.
            # A restored one keeps its hosts' disks: they hold each host's installed version.
            shutil.rmtree(directory / "hosts", ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        machines: dict[str, LabMachine] = {}
        pool: LabPool | None = None
        server: XapiServer | None = None
        try:
            for host_spec in layout.hosts:
                machines[host_spec.name] = LabMachine(
                    host_spec.name, directory, address=host_spec.address if use_ssh else None
                )
            initial = load_faults(faults) if faults else Faults()
            pool = LabPool(layout, speed=speed, machines=dict(machines), faults=initial)
            if state is not None:
                try:
                    persistence.apply(pool, state)
                except (KeyError, ValueError, TypeError, AttributeError) as error:
                    raise LabStateUnusable(f"its saved state is unusable ({error!r})") from error
                # Faults again: a host saved down by `no_return` boots now if it was cleared.
                pool.set_faults(initial)
            for host_spec in layout.hosts:
                host = pool.host_named(host_spec.name)
                if host.live:
                    machine = machines[host_spec.name]
                    # A restored host did not reboot: same boot id, its running version.
                    boot_id = (machine.boot_id() if state else None) or str(uuid.uuid4())
                    machine.power_on(boot_id, host.version)
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
        lab.restored = state is not None
        lab.poll_faults()
        lab.write_inventory(directory / "inventory.yml")
        if faults:
            lab._watcher = threading.Thread(
                target=lab._watch_faults, name="lab-faults", daemon=True
            )
            lab._watcher.start()
        if persist:
            lab._saver = persistence.Saver(
                pool, directory / persistence.STATE_FILE, spec, restored=lab.restored
            )
        return lab

    @classmethod
    def start_for(cls, spec: LabSpec, directory: Path, restore: bool = False) -> RunningLab:
        """The in-process lab an inventory asks for, its state kept in `directory`.

        `restore`: the pool as the last lab in `directory` left it (`rollup resume`);
        otherwise a fresh one (`rollup run` starts a new run on a new lab).
        """
        return cls.start(
            hosts=spec.hosts,
            vms=spec.vms,
            seed=spec.seed,
            speed=spec.speed,
            ssh=spec.ssh,
            port=0,
            directory=directory,
            faults=spec.faults,
            persist=True,
            restore=restore,
        )

    def save_state(self) -> bool:
        """Save the pool's state now if it changed (a persistent lab only)."""
        return self._saver.save_if_changed() if self._saver is not None else False

    def stop(self) -> None:
        self._stop.set()
        try:
            # No more calls first, so the state saved is the last one clients saw settled.
            self.server.stop()
            if self._saver is not None:
                self._saver.close()
        finally:
            self.pool.close()
            for machine in self.machines.values():
                machine.close()
            if self._reaper is not None:
                self._reaper.release()
                self._reaper = None

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
                "rollup_playbook": bundled.playbook("lab-patch.yml"),
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


def _free_network(ssh: bool, hosts: int, tried: set[str]) -> str:
    """A loopback /24 no other lab uses (in-process labs must not clash with `lab up`)."""
    # Not root, each sshd binds a port free at the time: only port 22 can clash.
    port = 22 if ssh and os.geteuid() == 0 else 0
    for third in range(11, 250):
        prefix = f"127.0.{third}."
        if prefix in tried:
            continue
        if not any(_listening(f"{prefix}{i}", port) for i in range(1, min(hosts, 254) + 1)):
            return prefix
    raise BadInput(
        "no free loopback network for the lab: stop other labs (`rollup lab down --dir D`)"
    )


def _listening(address: str, port: int) -> bool:
    if port == 0:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((address, port)) == 0
