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
import re
import secrets
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from rollup.errors import BadInput, LabStateUnusable, RemoteError
from rollup.lab import Flavor, LabSpec, networks, releases, rpm_builds
from rollup.lab.address_holder import taken
from rollup.lab.faults import Faults, load_faults
from rollup.lab.generator import generate
from rollup.lab.hosts import LabMachine, stop_stale_daemons
from rollup.lab.installer_repo import InstallerRepo
from rollup.lab.layout import Layout
from rollup.lab.proxmox.server import PMXCFS, PveServer
from rollup.lab.reaper import Reaper
from rollup.lab.sshd import SSHD
from rollup.lab.xapi import handover, persistence
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.repository import open_repository
from rollup.lab.xapi.server import XapiServer
from rollup.lab.yum_mirror import YumMirror
from rollup.model import version_key
from rollup.remote import RemoteHost

log = logging.getLogger("rollup")
_BIND_FAILED = re.compile(r"Bind to port (?P<port>\d+) on (?P<address>[\d.]+) failed")


class RunningLab:
    def __init__(
        self,
        pool: LabPool,
        server: XapiServer | PveServer,
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
        self.ca_file: str | None = None  # the CA its API's certificate is signed by (HTTPS)
        self.faults_path = Path(faults).resolve() if faults else None
        self._faults_mtime: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._saver: persistence.Saver | None = None
        self.restored = False  # the pool came back from pool-state.json
        self.update = "xapi"  # how the inventory it writes patches its hosts
        self.installer: InstallerRepo | None = None  # its network installer repository
        self.installer_url = ""
        self.mirror: YumMirror | None = None  # its package mirror (hosts with real dnf)
        self._reaper: Reaper | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def current_release(self) -> str:
        """What its installer installs: the flavor's current release."""
        return releases.current(self.pool.layout.flavor)

    @property
    def upgrades(self) -> bool:
        """Whether some host runs an older release than the current one."""
        current = version_key(self.current_release)
        return any(version_key(h.version) < current for h in self.pool.hosts.values())

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
        flavor: Flavor = "xcp-ng",
        release: str | None = None,
        update: str = "xapi",
        up_to_date: bool = False,
    ) -> RunningLab:
        """Start a lab; `persist`: keep its state in `directory` (lab/persistence.py);
        `restore`: bring back the state kept there if it is this lab's, else start fresh.
        `flavor` and `release` (default: the flavor's current one) say what its hosts run;
        `update` how the inventory it writes patches them ("xapi" or "playbook");
        `up_to_date`: no host starts with updates pending."""
        release = releases.check(flavor, release)
        if flavor == "proxmox":
            # Its hosts are patched by apt over SSH: the driver asks them on SSH too.
            update, ssh = "playbook", True
        directory = directory.resolve()
        use_ssh = SSHD.exists() if ssh == "auto" else bool(ssh)
        reaper = Reaper.start(directory)  # from here on, nothing it starts outlives us
        try:
            lab = cls._start_on_free_network(
                directory, reaper, network, use_ssh, restore,
                hosts=hosts, vms=vms, seed=seed, fill=fill, flavor=flavor, release=release,
                speed=speed, port=port, faults=faults, persist=persist, update=update,
                up_to_date=up_to_date,
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
        flavor: Flavor,
        release: str,
        **options: Any,
    ) -> RunningLab:
        """Start on `network`, else on the first loopback /24 whose addresses bind."""
        tried: set[str] = set()
        while True:
            prefix = networks.prefix(network) if network else networks.free(use_ssh, hosts, tried)
            try:
                layout = generate(
                    hosts, vms, seed, address_prefix=prefix, fill=fill, version=release,
                    flavor=flavor,
                )  # fmt: skip
                spec = persistence.identity(hosts, vms, seed, fill, flavor, release)
                return cls._start_fresh_or_restored(
                    directory, layout, spec, restore, use_ssh=use_ssh, **options
                )
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
        update: str,
        up_to_date: bool,
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
        server: XapiServer | PveServer | None = None
        installer: InstallerRepo | None = None
        mirror: YumMirror | None = None
        proxmox = layout.flavor == "proxmox"
        try:
            # Real rpm and dnf on XCP-ng and XenServer hosts, from the lab's own mirror.
            mirror = None if proxmox else YumMirror.started(directory, lambda: pool, speed)
            for host_spec in layout.hosts:
                machines[host_spec.name] = LabMachine(
                    host_spec.name,
                    directory,
                    address=host_spec.address if use_ssh else None,
                    speed=speed,
                    # A Proxmox node's tools are Debian's, its /etc/pve the cluster's.
                    tools="deb" if proxmox else "rpm",
                    shared_etc_pve=directory / PMXCFS if proxmox else None,
                    mirror=mirror.url if mirror is not None else None,
                )
            initial = load_faults(faults) if faults else Faults()
            repository = open_repository(layout, directory, fresh=state is None)
            if mirror is not None:
                rpm_builds.refresh(repository)  # before the hosts' packages are seeded
            pool = LabPool(
                layout,
                speed=speed,
                machines=dict(machines),
                faults=initial,
                repository=repository,
                up_to_date=up_to_date,
            )
            if not proxmox:
                # As many pools are set: VMs marked so start when their host boots (a
                # Proxmox lab's guests have no onboot: they start when rollup says).
                pool.other_config["auto_poweron"] = "true"
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
            installer_url = ""
            if proxmox:
                server = PveServer.for_lab(pool, directory, port, password, fresh=state is None)
                server.start()
            else:
                server = XapiServer(pool, port=port, user="root", password=password)
                server.start()
                # The flavor's current release, served where its hosts can fetch it.
                installer = InstallerRepo(directory / "installer", layout.hosts[0].address)
                installer_url = installer.add(layout.flavor, releases.current(layout.flavor))
                installer.start()
        except BaseException:
            if mirror is not None:
                mirror.stop()
            if installer is not None:
                installer.stop()
            if server is not None:
                server.stop()
            if pool is not None:
                pool.close()
            for machine in machines.values():
                machine.close()
            raise
        lab = cls(pool, server, machines, directory, password, faults)
        if isinstance(server, PveServer):
            # rollup logs in with an API token, as Proxmox admins give automation.
            lab.user, lab.password, lab.ca_file = server.token_id, server.token, str(server.ca)
        lab.update = update
        lab.installer, lab.installer_url = installer, installer_url
        lab.mirror = mirror
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
            flavor=spec.flavor,
            release=spec.release,
            up_to_date=spec.up_to_date,
            **({"fill": (spec.fill, spec.fill)} if spec.fill is not None else {}),
        )

    def save_state(self) -> bool:
        """Save the pool's state now if it changed (a persistent lab only)."""
        return self._saver.save_if_changed() if self._saver is not None else False

    def stop(self) -> None:
        self._stop.set()
        try:
            # No more calls first, so the state saved is the last one clients saw settled.
            self.server.stop()
            if self.installer is not None:
                self.installer.stop()
            if self.mirror is not None:
                self.mirror.stop()
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
        return handover.inventory(self)

    def write_inventory(self, path: Path) -> None:
        handover.write_inventory(self, path)

    def banner(self) -> str:
        return handover.banner(self)
