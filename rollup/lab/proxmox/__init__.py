"""The Proxmox VE lab: the simulated pool (lab/xapi/pool.py) seen through the PVE REST API.

A Proxmox cluster has no master: every node answers the whole cluster's API on its own
address (HTTPS, port 8006 on a real node; one free port here), with a certificate the
cluster's CA signed. The subset served (api.py) is what a rolling update needs:
tickets and API tokens (auth.py), nodes and VMs (`/cluster/resources`, resources.py),
pending updates (`/nodes/{node}/apt/update`), live migration as a task with a UPID and
a log (tasks.py), node reboots, Ceph's flags. Node maintenance is what a real cluster
does with it: `ha-manager crm-command node-maintenance` on a node's SSH session queues
the command in /etc/pve (the cluster file system, one directory shared by the lab's
nodes), and the cluster resource manager (crm.py) applies it.
"""
