"""What rollup does on a Proxmox node's own shell, over SSH.

- its boot id (`Host.boot_mark`): /proc/sys/kernel/random/boot_id, new at every boot (the
  API says only how long a node has been up);
- node maintenance: `ha-manager crm-command node-maintenance enable|disable NODE`
  queues the command for the cluster resource manager, which applies it a moment later
  (rollup waits until the API shows the node's new mode). A node in maintenance gets no
  HA resources and stays so across reboots, until the command that ends it;
- the run lock: /etc/pve/rollup/lock, on the cluster file system every node shares, so
  any node that answers holds the same lock (rollup/drivers/host_file_lock.py).
"""

from __future__ import annotations

import shlex

from rollup.drivers.host_shell import ROOT, run
from rollup.errors import TransientDriverError
from rollup.remote import RemoteHost

LOCK_PATH = "etc/pve/rollup/lock"
_BOOT_ID = f'{ROOT}; cat "$root/proc/sys/kernel/random/boot_id"'


def boot_id(host: RemoteHost) -> str:
    found = run(host, _BOOT_ID, f"read node {host.name}'s boot id").strip()
    if not found:
        raise TransientDriverError(f"node {host.name} reported no boot id", "NO_BOOT_ID")
    return found


def maintenance(host: RemoteHost, node: str, on: bool) -> None:
    """Queue the command that puts `node` in maintenance (`on`) or takes it out."""
    action = "enable" if on else "disable"
    command = f"ha-manager crm-command node-maintenance {action} {shlex.quote(node)}"
    run(host, command, f"{action} maintenance mode of node {node}")
