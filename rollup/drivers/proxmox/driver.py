"""The Proxmox VE driver: the cluster's REST API through proxmoxer, its nodes over SSH.

A cluster has no master (`Pool.master` is None) and any node answers its API
(link.py fails over to the next). What each call does:

- snapshot: /cluster/resources (nodes, guests), /cluster/ha/status/current (which
  nodes are in maintenance), each node's boot id over SSH (nodes.py; read again only
  when its uptime went back), its version from /nodes/{node}/status once per boot, and
  for the hosts asked, what keeps a guest in place (GET .../qemu/{vmid}/migrate);
- disable / enable: node maintenance mode through `ha-manager` on the node, then wait
  until the cluster shows it. A node stays in maintenance across its reboot: rollup's
  enable step ends it (so wait_back waits for the new boot only, not for "enabled");
- migrate: POST .../qemu/{vmid}/migrate online=1, its task followed to the end (tasks.py);
- reboot: POST /nodes/{node}/status command=reboot, refused here unless the node is in
  maintenance and empty;
- pending updates: GET /nodes/{node}/apt/update (as of the node's last package list
  refresh; the playbook refreshes them before it installs);
- lock: /etc/pve/rollup/lock on the cluster file system (nodes.py);
- "HA": Proxmox's own HA needs no pausing (maintenance mode moves HA resources); what
  the run sets instead is Ceph's `noout`, restored at the end as it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollup.drivers import (
    UNFOLLOWED,
    Connection,
    Follow,
    HaState,
    InventoryHost,
    PoolUpdates,
    Progress,
)
from rollup.drivers.host_file_lock import HostFileStore
from rollup.drivers.proxmox import nodes, records
from rollup.drivers.proxmox.guests import Guests
from rollup.drivers.proxmox.link import ApiLink
from rollup.drivers.run_lock import HoldsRunLock, RunLock, parse_lock
from rollup.errors import BadInput, DriverError, HostTimeout
from rollup.model import Blocker, Host, Pending, Pool
from rollup.remote import RemoteHost
from rollup.text.plurals import noun, verb

log = logging.getLogger("rollup.drivers.proxmox")

MODE_SECONDS = 120.0  # for the CRM to put a node in or out of maintenance
WAIT_INTERVAL = 0.25


class ProxmoxDriver(HoldsRunLock):
    name = "proxmox"

    def __init__(
        self,
        connection: Connection,
        hosts: Sequence[InventoryHost],
        pool_name: str,
        settings: Mapping[str, object],
    ) -> None:
        if not hosts:
            raise BadInput(f"Proxmox pool {pool_name}: list its nodes in the inventory group")
        self.link = ApiLink(connection)
        # Every node serves the API: the inventory's addresses are the ones to try
        # while the URL's node is down (it may be rebooting under a resumed run).
        self.link.learn([host.address for host in hosts if host.address])
        self.pool_name = pool_name
        self.noout = bool(settings.get("rollup_proxmox_noout", True))
        status = self.link.get("read the cluster's status", "cluster/status")
        cluster = next((e for e in status if e.get("type") == "cluster"), {})
        self.cluster = str(cluster.get("name") or pool_name)
        self.addresses = {
            str(e["name"]): str(e.get("ip", "")) for e in status if e.get("type") == "node"
        }
        self.link.learn(list(self.addresses.values()))
        self.guests = Guests(self.link, self.cluster)
        self.remotes = {host.pool_host_name or host.name: host.remote for host in hosts}
        _check_nodes(self.cluster, set(self.remotes), set(self.addresses))
        self._executor = ThreadPoolExecutor(min(8, len(self.remotes)), "rollup-proxmox")
        self._lock = RunLock(HostFileStore(list(self.remotes.values()), pool_name, nodes.LOCK_PATH))
        self._boots: dict[str, tuple[str, int]] = {}  # node → (boot id, uptime when read)
        self._versions: dict[tuple[str, str], str] = {}  # (node, boot id) → version
        self._guard = threading.Lock()

    # -- reading ---------------------------------------------------------------------

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        found = self.link.get("read the cluster's resources", "cluster/resources")
        node_entries = [e for e in found if e.get("type") == "node"]
        guests = [e for e in found if e.get("type") == "qemu" and not e.get("template")]
        maintenance = self._maintenance()
        checked = [
            e for e in guests
            if e.get("status") == "running" and (blockers_for is None or e["node"] in blockers_for)
        ]  # fmt: skip
        pins = dict(
            zip(
                (str(e["vmid"]) for e in checked),
                self._executor.map(self._pins, checked),
                strict=True,
            )
        )
        vms = [records.vm(e, pins.get(str(e["vmid"]), ())) for e in guests]
        marks = list(self._executor.map(self._boot, node_entries))
        hosts = []
        for entry, (mark, version) in zip(node_entries, marks, strict=True):
            name = str(entry["node"])
            on_it = [vm for vm in vms if vm.host == name]
            live_entry = entry if mark else {**entry, "status": "unknown"}
            hosts.append(
                records.host(
                    live_entry,
                    self.addresses.get(name, ""),
                    on_it,
                    name in maintenance,
                    mark,
                    version,
                )
            )
        lock = None
        if blockers_for is None:
            lock = parse_lock(self._lock.store.read())
        return Pool(
            id=f"proxmox:{self.cluster}",
            name=self.cluster,
            driver="proxmox",
            master=None,
            ha_enabled=False,
            hosts=tuple(sorted(hosts, key=lambda h: h.name)),
            vms=tuple(sorted(vms, key=lambda vm: vm.name)),
            lock=lock,
            flavor="proxmox",
        )

    def _maintenance(self) -> set[str]:
        """Nodes the HA manager holds in maintenance mode (its node_status)."""
        found = self.link.get("read the HA manager's status", "cluster/ha/status/manager_status")
        nodes = (found or {}).get("manager_status", {}).get("node_status", {})
        return {str(node) for node, mode in nodes.items() if mode == "maintenance"}

    def _pins(self, entry: Mapping[str, Any]) -> tuple[Blocker, ...]:
        path = f"nodes/{entry['node']}/qemu/{entry['vmid']}/migrate"
        return records.blockers(self.link.get(f"ask whether VM {entry.get('name')} can move", path))

    def _boot(self, entry: Mapping[str, Any]) -> tuple[str, str]:
        """(boot id, version) of a node; ("", "") when it is down or its SSH is."""
        name = str(entry["node"])
        if entry.get("status") != "online" or name not in self.remotes:
            return "", ""
        uptime = int(entry.get("uptime") or 0)
        with self._guard:
            known = self._boots.get(name)
        if known is not None and uptime >= known[1]:
            boot = known[0]  # up all along since we read it: the same boot
        else:
            try:
                boot = nodes.boot_id(self.remotes[name])
            except DriverError as error:
                log.debug("node %s: %s", name, error.message)
                return "", ""
        with self._guard:
            self._boots[name] = (boot, uptime)
            version = self._versions.get((name, boot))
        if version is None:
            status = self.link.get(f"read node {name}'s status", f"nodes/{name}/status")
            version = records.version_of(str(status.get("pveversion", "")))
            with self._guard:
                self._versions[(name, boot)] = version
        return boot, version

    def pending_updates(self, hosts: Collection[str] | None = None) -> PoolUpdates:
        names = list(hosts) if hosts is not None else list(self.remotes)
        found = dict(zip(names, self._executor.map(self._pending, names), strict=True))
        return PoolUpdates({name: p for name, p in found.items() if p is not None})

    def _pending(self, name: str) -> Pending | None:
        try:
            return records.pending(
                self.link.get(f"list node {name}'s updates", f"nodes/{name}/apt/update")
            )
        except DriverError as error:
            log.debug("node %s: no update list: %s", name, error.message)
            return None

    # -- hosts -----------------------------------------------------------------------

    def install_updates(
        self, host: str, packages: Sequence[str] = (), hash_: str = "", follow: Follow = UNFOLLOWED
    ) -> tuple[str, ...]:
        raise DriverError("Proxmox VE nodes are patched by the playbook (apt)", "NO_UPDATE_SERVICE")

    def restart_toolstack(self, host: str, timeout: float) -> Host:
        raise DriverError("Proxmox VE nodes are patched by the playbook (apt)", "NO_TOOLSTACK")

    def installer_problem(self, host: str, url: str) -> str:
        return "Proxmox VE nodes upgrade with apt (the playbook), not a network installer"

    def prepare_upgrade(self, host: str, url: str) -> None:
        raise DriverError("Proxmox VE nodes have no network installer", "NO_INSTALLER")

    def disable(self, host: str) -> None:
        self._set_maintenance(host, True)

    def enable(self, host: str) -> None:
        self._set_maintenance(host, False)

    def _set_maintenance(self, host: str, on: bool) -> None:
        remote = self._remote(host)
        if (host in self._maintenance()) == on:
            return
        nodes.maintenance(remote, host, on)
        deadline = time.monotonic() + MODE_SECONDS
        while (host in self._maintenance()) != on:
            if time.monotonic() > deadline:
                raise HostTimeout(
                    f"node {host} is not {'in' if on else 'out of'} maintenance mode"
                    f" {MODE_SECONDS:.0f}s after ha-manager was asked: is the HA stack"
                    " (pve-ha-crm) running?",
                    "MAINTENANCE_TIMEOUT",
                    (host,),
                )
            time.sleep(WAIT_INTERVAL)
        log.debug("node %s %s maintenance mode", host, "in" if on else "out of")

    def reboot(self, host: str) -> None:
        self._remote(host)
        pool = self.snapshot(blockers_for=())
        if pool.host(host).enabled:
            raise DriverError(
                f"could not reboot node {host}: it is not in maintenance mode; disable and"
                " evacuate it first",
                "HOST_NOT_DISABLED",
                (host,),
            )
        running = [vm.name for vm in pool.resident(host)]
        # Containers do not live-migrate (rollup moves QEMU guests only): a node still
        # running one is not rebooted under it.
        containers = self.link.get(f"list node {host}'s containers", f"nodes/{host}/lxc")
        running += [
            f"container {c.get('name') or c.get('vmid')}"
            for c in containers or ()
            if c.get("status") == "running"
        ]
        if running:
            raise DriverError(
                f"could not reboot node {host}: {noun(len(running), 'VM')} still"
                f" {verb(len(running), 'runs', 'run')} on it ({', '.join(running)});"
                " evacuate it first",
                "HOST_IN_USE",
                (host, *running),
            )
        self.link.post(f"reboot node {host}", f"nodes/{host}/status", command="reboot")
        log.debug("node %s is rebooting", host)

    def wait_back(self, host: str, since: str, timeout: float) -> Host:
        """Until `host` answers again from a boot other than `since`. It comes back in
        maintenance mode (the run's enable step ends it)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.snapshot(blockers_for=()).host(host)
            if state.live and state.boot_mark and state.boot_mark != since:
                return state
            last = (
                "it has not rebooted yet" if state.live else "it is offline or SSH does not answer"
            )
            if time.monotonic() + WAIT_INTERVAL > deadline:
                raise HostTimeout(
                    f"node {host} did not come back within {timeout:.0f}s (last seen: {last})",
                    "HOST_TIMEOUT",
                    (host, since),
                )
            time.sleep(WAIT_INTERVAL * 2)

    # -- VMs -------------------------------------------------------------------------

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None:
        self.guests.migrate(vm, dest, progress)

    def shutdown_vm(self, vm: str) -> None:
        self.guests.shutdown(vm)

    def start_vm(self, vm: str, host: str) -> None:
        self.guests.start(vm, host)

    def restart_vm(self, vm: str) -> None:
        self.guests.restart(vm)

    # -- Ceph, in HA's place ------------------------------------------------------------

    def pause_ha(self) -> HaState:
        if not self.noout:
            return HaState(enabled=False)
        try:
            flags = self.link.get("read Ceph's flags", "cluster/ceph/flags")
        except DriverError as error:
            if not _no_ceph(error):
                raise DriverError(
                    f"{error.message}: give the token Sys.Audit and Sys.Modify on /, or set"
                    " rollup_proxmox_noout: false to leave Ceph's flags alone",
                    error.code,
                    error.params,
                ) from None
            log.debug("no Ceph here (%s): no noout to set", error.message)
            return HaState(enabled=False)
        was = any(f.get("name") == "noout" and f.get("value") for f in flags)
        if was:
            return HaState(enabled=False, detail=(("ceph_noout", "1"),))
        self.link.put("set Ceph's noout flag", "cluster/ceph/flags/noout", value=1)
        return HaState(
            enabled=False,
            detail=(("ceph_noout", "0"),),
            paused="Ceph's noout flag (a rebooting node's OSDs stay in)",
        )

    def restore_ha(self, state: HaState) -> None:
        if dict(state.detail).get("ceph_noout") == "0":
            self.link.put("clear Ceph's noout flag", "cluster/ceph/flags/noout", value=0)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.link.close()

    def _remote(self, host: str) -> RemoteHost:
        remote = self.remotes.get(host)
        if remote is None:
            raise DriverError(
                f"no node {host} in Proxmox pool {self.pool_name}", "NO_HOST", (host,)
            )
        return remote


def _no_ceph(error: DriverError) -> bool:
    """Whether a failed read of Ceph's flags says there is no Ceph on this cluster."""
    text = error.message.lower()
    return error.code == "HTTP_500" and any(
        words in text
        for words in ("not installed", "not configured", "rados_connect", "no such file")
    )


def _check_nodes(cluster: str, inventory: set[str], known: set[str]) -> None:
    strangers = sorted(inventory - known)
    if strangers:
        raise BadInput(
            f"Proxmox cluster {cluster}: {', '.join(strangers)} {verb(len(strangers), 'is', 'are')}"
            f" not among its nodes ({', '.join(sorted(known))}): name inventory hosts after"
            " the nodes, or set rollup_host_name"
        )
    missing = sorted(known - inventory)
    if missing:
        raise BadInput(
            f"Proxmox cluster {cluster}: node {', '.join(missing)} is not in the inventory:"
            " add every node (rollup reaches each over SSH)"
        )


def connect(
    connection: Connection | None,
    hosts: Sequence[InventoryHost],
    pool: str,
    settings: Mapping[str, object],
) -> ProxmoxDriver:
    if connection is None:
        raise BadInput("a Proxmox VE pool needs rollup_api_url: https://NODE:8006")
    return ProxmoxDriver(connection, hosts, pool, settings)
