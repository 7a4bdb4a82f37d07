"""The lab pool as the PVE API shows it: nodes, VMs, cluster status, a node's status.

A VM's id (`vmid`) is its place in the lab's layout from 100 on. A stopped VM belongs
to a node too (its configuration lives there): the one it last ran on, kept as its
affinity, else the first node. Memory: a node's `maxmem` is its RAM, `mem` what its own
processes and its VMs use; a VM's `maxmem` is what it occupies running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollup.lab.proxmox.failure import PveFailure
from rollup.lab.xapi.objects import NULL, SimHost, SimVM

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

FIRST_VMID = 100
STORAGE = "ceph-vm"  # the shared RBD pool every node sees
LOCAL_STORAGE = "local-lvm"
PIN_DEVICES = {"pci": "hostpci0", "vgpu": "hostpci1", "sriov": "hostpci2"}


class Ids:
    """vmid ⇄ VM ref, fixed by the layout."""

    def __init__(self, pool: LabPool) -> None:
        self.refs: dict[int, str] = {}
        self.vmids: dict[str, int] = {}
        guests = [vm for vm in pool.vms.values() if not vm.is_control_domain]
        order = {spec.uuid: n for n, spec in enumerate(pool.layout.vms)}
        for n, vm in enumerate(sorted(guests, key=lambda v: order.get(v.uuid, len(order)))):
            self.refs[FIRST_VMID + n] = vm.ref
            self.vmids[vm.ref] = FIRST_VMID + n


def node(pool: LabPool, name: str) -> SimHost:
    for host in pool.hosts.values():
        if host.name == name:
            return host
    raise PveFailure(
        500,
        f"hostname lookup '{name}' failed - failed to get address info for: {name}:"
        " Name or service not known",
    )


def home(pool: LabPool, vm: SimVM) -> SimHost:
    """The node a VM belongs to."""
    ref = vm.resident_on if vm.resident_on != NULL else vm.affinity
    return pool.hosts.get(ref) or pool.hosts[pool.master]


def vm_on(pool: LabPool, ids: Ids, name: str, vmid: str) -> SimVM:
    """VM `vmid` of node `name`, as `/nodes/{name}/qemu/{vmid}` finds it."""
    ref = ids.refs.get(int(vmid)) if vmid.isdigit() else None
    vm = pool.vms.get(ref or "")
    if vm is None or home(pool, vm).name != name:
        raise PveFailure(
            500, f"Configuration file 'nodes/{name}/qemu-server/{vmid}.conf' does not exist"
        )
    return vm


def online(host: SimHost) -> bool:
    """What the cluster says of a node: online once it has booted and its services run
    (the simulated pool's "booting" phase stands for pve-cluster and pvestatd starting;
    a guest sent to a node before that would be refused)."""
    return host.live and host.phase != "booting"


def uptime(pool: LabPool, host: SimHost) -> int:
    return max(0, int(pool.now() - host.boot_time)) if host.live else 0


def node_entry(pool: LabPool, host: SimHost) -> dict[str, Any]:
    # An offline node reports nothing: pvestatd is not running there (yet).
    up = online(host)
    return {
        "id": f"node/{host.name}",
        "type": "node",
        "node": host.name,
        "status": "online" if up else "offline",
        "maxmem": host.memory_total,
        "mem": host.memory_total - pool.memory_free(host.ref) if up else 0,
        "maxcpu": 32,
        "cpu": 0.04 if up else 0,
        "uptime": uptime(pool, host) if up else 0,
        "level": "",
    }


def vm_entry(pool: LabPool, ids: Ids, vm: SimVM) -> dict[str, Any]:
    running = vm.power_state in ("Running", "Paused")
    vmid = ids.vmids[vm.ref]
    return {
        "id": f"qemu/{vmid}",
        "type": "qemu",
        "vmid": vmid,
        "name": vm.name,
        "node": home(pool, vm).name,
        "status": "running" if running else "stopped",
        "maxmem": vm.footprint,
        "mem": vm.footprint * 3 // 4 if running else 0,
        "maxcpu": 2,
        "maxdisk": 32 * 2**30,
        "template": 0,
        "uptime": 3600 if running else 0,
    }


def storage_entries(pool: LabPool) -> list[dict[str, Any]]:
    found = []
    for host in pool.hosts.values():
        for name, shared in ((STORAGE, 1), (LOCAL_STORAGE, 0)):
            found.append(
                {
                    "id": f"storage/{host.name}/{name}",
                    "type": "storage",
                    "storage": name,
                    "node": host.name,
                    "shared": shared,
                    "status": "available" if online(host) else "unknown",
                    "plugintype": "rbd" if shared else "lvmthin",
                }
            )
    return found


def cluster_status(pool: LabPool, local: str) -> list[dict[str, Any]]:
    hosts = list(pool.hosts.values())
    found: list[dict[str, Any]] = [
        {
            "type": "cluster",
            "id": "cluster",
            "name": pool.name,
            "nodes": len(hosts),
            "quorate": int(sum(online(h) for h in hosts) * 2 > len(hosts)),
            "version": len(hosts),
        }
    ]
    for n, host in enumerate(hosts, start=1):
        found.append(
            {
                "type": "node",
                "id": f"node/{host.name}",
                "name": host.name,
                "nodeid": n,
                "ip": host.address,
                "online": int(online(host)),
                "local": int(host.ref == local),
                "level": "",
            }
        )
    return found


def node_status(pool: LabPool, host: SimHost) -> dict[str, Any]:
    used = host.memory_total - pool.memory_free(host.ref)
    kernel = "6.8.12-4-pve"
    return {
        "uptime": uptime(pool, host),
        "pveversion": f"pve-manager/{host.version}/c1689ccb1065a83b",
        "kversion": f"Linux {kernel} #1 SMP PREEMPT_DYNAMIC PMX {kernel}",
        "memory": {"total": host.memory_total, "used": used, "free": host.memory_total - used},
        "cpuinfo": {"cpus": 32, "sockets": 2, "model": "rollup lab CPU"},
        "loadavg": ["0.10", "0.08", "0.05"],
        "boot-info": {"mode": "efi", "secureboot": 0},
    }


def migrate_check(pool: LabPool, ids: Ids, vm: SimVM) -> dict[str, Any]:
    """GET /nodes/{node}/qemu/{vmid}/migrate: what keeps a VM where it is."""
    source = home(pool, vm)
    vmid = ids.vmids[vm.ref]
    local_disks = []
    if vm.pin == "local-sr":
        local_disks.append(
            {"volid": f"{LOCAL_STORAGE}:vm-{vmid}-disk-0", "size": 32 * 2**30, "drivename": "scsi0"}
        )
    devices = [PIN_DEVICES[vm.pin]] if vm.pin in PIN_DEVICES else []
    others = [h.name for h in pool.hosts.values() if h.ref != source.ref]
    return {
        "running": int(vm.power_state == "Running"),
        "allowed_nodes": [] if devices else others,
        "not_allowed_nodes": {name: {"unavailable_storages": []} for name in others}
        if devices
        else {},
        "local_disks": local_disks,
        "local_resources": devices,
        "mapped-resources": [],
    }
