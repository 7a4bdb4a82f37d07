"""What the Proxmox driver does to guests: each a task on its node, followed to its end.

Live migration is POST /nodes/{node}/qemu/{vmid}/migrate with online=1 from wherever the
guest runs now (HA may have moved it already); a stopped guest's configuration moves
with online=0 before it starts elsewhere. A task that ends other than "OK" fails the
call with the last lines of its log as the evidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from rollup.drivers import Progress
from rollup.drivers.proxmox.link import ApiLink
from rollup.drivers.proxmox.tasks import Outcome, follow
from rollup.errors import DriverError, MigrationRefused

log = logging.getLogger("rollup.drivers.proxmox")
TASK_SECONDS = 3600.0  # the longest a migration or a guest's start may run
SHUTDOWN_SECONDS = 60
LANDING_SECONDS = 600.0  # an HA-managed guest's migration, after its request task


class Guests:
    def __init__(self, link: ApiLink, cluster: str) -> None:
        self.link = link
        self.cluster = cluster

    def migrate(self, vm: str, dest: str, progress: Progress | None = None) -> None:
        entry = self._guest(vm)
        name, source = str(entry.get("name") or vm), str(entry["node"])
        if source == dest:
            return
        if entry.get("status") != "running":
            raise MigrationRefused(
                vm, dest, f"could not migrate VM {name}: it is not running", "VM_NOT_RUNNING"
            )
        what = f"migrate VM {name} from {source} to {dest}"
        try:
            upid = self.link.post(what, f"nodes/{source}/qemu/{vm}/migrate", target=dest, online=1)
        except DriverError as error:
            raise MigrationRefused(vm, dest, error.message, error.code, error.params) from None
        outcome = follow(self.link, str(upid), what, TASK_SECONDS, progress)
        if outcome.ok:
            self._landed(vm, dest, what)
            return
        refused = MigrationRefused(
            vm,
            dest,
            f"could not {what}: {outcome.exitstatus}",
            "TASK_FAILED",
            (str(upid), outcome.exitstatus),
        )
        refused.output = outcome.evidence
        raise refused

    def _landed(self, vm: str, dest: str, what: str) -> None:
        """Until the cluster shows the guest on `dest`: for an HA-managed guest the task
        that ends OK only handed the request to the HA manager, which moves it after."""
        deadline = time.monotonic() + LANDING_SECONDS
        while (node := str(self._guest(vm)["node"])) != dest:
            if time.monotonic() > deadline:
                raise MigrationRefused(
                    vm,
                    dest,
                    f"could not {what}: its task ended OK, yet it runs on {node}"
                    f" {LANDING_SECONDS:.0f}s later (does HA place it elsewhere?)",
                    "NOT_LANDED",
                    (node,),
                )
            time.sleep(0.2)

    def shutdown(self, vm: str) -> None:
        """A clean (ACPI) shutdown, then a stop if the guest has not gone in time."""
        entry = self._guest(vm)
        if entry.get("status") not in ("running", "paused"):
            return
        node, name = entry["node"], entry.get("name") or vm
        upid = self.link.post(
            f"shut down VM {name}",
            f"nodes/{node}/qemu/{vm}/status/shutdown",
            timeout=SHUTDOWN_SECONDS,
        )
        if follow(self.link, str(upid), f"shut down VM {name}", TASK_SECONDS).ok:
            return
        log.info("VM %s did not shut down cleanly; stopping it", name)
        upid = self.link.post(f"stop VM {name}", f"nodes/{node}/qemu/{vm}/status/stop")
        self._done(follow(self.link, str(upid), f"stop VM {name}", TASK_SECONDS), f"stop VM {name}")

    def start(self, vm: str, host: str) -> None:
        """Start a stopped guest on `host`, moving its configuration there first."""
        entry = self._guest(vm)
        name, node = str(entry.get("name") or vm), str(entry["node"])
        if entry.get("status") == "running":
            if node == host:
                return
            raise DriverError(f"could not start VM {name}: it runs on {node}", "RUNNING", (node,))
        if node != host:
            what = f"move stopped VM {name}'s configuration from {node} to {host}"
            upid = self.link.post(what, f"nodes/{node}/qemu/{vm}/migrate", target=host, online=0)
            self._done(follow(self.link, str(upid), what, TASK_SECONDS), what)
        what = f"start VM {name} on {host}"
        upid = self.link.post(what, f"nodes/{host}/qemu/{vm}/status/start")
        self._done(follow(self.link, str(upid), what, TASK_SECONDS), what)

    def restart(self, vm: str) -> None:
        entry = self._guest(vm)
        what = f"reboot VM {entry.get('name') or vm}"
        upid = self.link.post(what, f"nodes/{entry['node']}/qemu/{vm}/status/reboot")
        self._done(follow(self.link, str(upid), what, TASK_SECONDS), what)

    def _done(self, outcome: Outcome, what: str) -> None:
        if not outcome.ok:
            raise DriverError(
                f"could not {what}: {outcome.exitstatus}",
                "TASK_FAILED",
                (outcome.exitstatus,),
                outcome.evidence,
            )

    def _guest(self, vm: str) -> Mapping[str, Any]:
        for entry in self.link.get(f"find VM {vm}", "cluster/resources", type="vm"):
            if str(entry.get("vmid")) == vm and entry.get("type") == "qemu":
                return entry
        raise DriverError(f"no VM {vm} in Proxmox cluster {self.cluster}", "NO_VM", (vm,))
