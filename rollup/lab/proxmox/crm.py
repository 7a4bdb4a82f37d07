"""The cluster resource manager's part in node maintenance, over the lab's /etc/pve.

`ha-manager crm-command node-maintenance enable NODE` (lab/apt.py on a node's SSH
session) appends its command to /etc/pve/ha/crm_commands, the cluster file system every
node shares (one directory of the lab: each node's root links etc/pve to it). The CRM
takes the commands, keeps each node's mode in /etc/pve/ha/manager_status (so it
survives a reboot, as it does on a real cluster: a node stays in maintenance until the
command that ends it) and holds the pool to it: a node in maintenance is disabled, so
nothing is placed on it, also after it boots again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rollup.lab.host_files import write_atomically

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

log = logging.getLogger(__name__)
COMMANDS = Path("ha/crm_commands")
STATUS = Path("ha/manager_status")
STATUS_TEXT = Path("ha/manager_status.txt")  # what `ha-manager status` prints
INTERVAL = 0.05  # real seconds between rounds: a real CRM's round is 10 s, too slow here


class Crm:
    def __init__(self, pool: LabPool, pmxcfs: Path) -> None:
        self.pool = pool
        self.pmxcfs = pmxcfs
        self._modes: dict[str, str] = self._load()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.round()
        self._thread = threading.Thread(target=self._loop, name="lab-pve-crm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def in_maintenance(self, node: str) -> bool:
        with self._lock:
            return self._modes.get(node) == "maintenance"

    def round(self) -> None:
        """Take the queued commands, hold every node to its mode, then show the modes."""
        commands = self._take()
        with self._lock:
            modes = dict(self._modes)
        names = {h.name for h in self.pool.hosts.values()}
        for words in commands:
            if len(words) == 3 and words[0] == "node-maintenance" and words[2] in names:
                modes[words[2]] = "maintenance" if words[1] == "enable" else "active"
            else:
                log.warning("lab CRM: unknown command %r", " ".join(words))
        # The pool first: once the API shows a node out of maintenance (what a driver
        # waits for), guests may be sent to it, so it must already take them.
        with self.pool.lock:
            for host in self.pool.hosts.values():
                wanted = modes.get(host.name, "active") != "maintenance"
                # xapi's boot enables a host; the CRM keeps a node in maintenance disabled.
                if host.live and host.phase == "up" and host.enabled != wanted:
                    host.enabled = wanted
                    self.pool.emit(host)
        with self._lock:
            if modes != self._modes:
                self._modes = modes
                self._save()

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            if self.pool.closed:
                return
            try:
                self.round()
            except OSError as error:  # the lab dir went away under a stopping lab
                log.debug("lab CRM: %s", error)
            except Exception:  # a lab bug: said, and the CRM goes on with its rounds
                log.exception("lab CRM round failed")

    def _take(self) -> list[list[str]]:
        """The queued commands, the file emptied under the lock `ha-manager` writes under,
        so a command appended meanwhile is read by the next round, never lost."""
        try:
            fd = os.open(self.pmxcfs / COMMANDS, os.O_RDWR)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "r+") as queue:
            fcntl.flock(queue, fcntl.LOCK_EX)
            text = queue.read()
            queue.seek(0)
            queue.truncate()
        return [line.split() for line in text.splitlines() if line.strip()]

    def _load(self) -> dict[str, str]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((self.pmxcfs / STATUS).read_text())
            return {str(k): str(v) for k, v in data.get("node_status", {}).items()}
        return {}

    def _save(self) -> None:
        data = {"node_status": self._modes, "timestamp": int(time.time())}
        write_atomically(self.pmxcfs / STATUS, json.dumps(data, sort_keys=True) + "\n")
        lines = ["quorum OK"] + [
            f"lrm {node} ({'maintenance mode' if mode == 'maintenance' else 'idle'})"
            for node, mode in sorted(self._modes.items())
        ]
        write_atomically(self.pmxcfs / STATUS_TEXT, "\n".join(lines) + "\n")
