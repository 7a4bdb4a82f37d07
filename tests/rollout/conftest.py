"""A lab pool with real sshd per host, and the real `rollup` command against it.

The lab runs in the test process (so it outlives a controller killed with SIGKILL);
`rollup` runs as a child process, exactly as a user or a pipeline runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollup.drivers import Connection
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.lab.xapi.running import RunningLab
from rollup.model import Pool
from tests import loopback
from tests.installed import ROLLUP

# Each lab of this package gets its own loopback /24 (127.0.130.0 upward; other
# packages use other ranges), so a daemon left by one test
# can never answer for the next.
_networks = itertools.count(130)
SPEED = 200.0


@dataclass
class LabDir:
    """A running lab and its directory: its inventory, fault file and rollup state."""

    running: RunningLab
    dir: Path
    state: Path
    faults: Path

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    def set_faults(self, faults: dict[str, Any]) -> None:
        self.faults.write_text(yaml.safe_dump(faults))
        # The lab re-reads the file when its mtime changes; make sure it does.
        self.running.poll_faults()

    def rollup(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return run_rollup(self.state, *args, timeout=timeout)

    def start_rollup(self, *args: str) -> subprocess.Popen[str]:
        return start_rollup(self.state, *args)

    def write_inventory(self, drop: tuple[str, ...] = (), **group_vars: Any) -> Path:
        """The lab's inventory with some group variables changed or dropped."""
        data = yaml.safe_load(self.inventory.read_text())
        group = next(iter(data["all"]["children"].values()))
        group["vars"].update(group_vars)
        for name in drop:
            group["vars"].pop(name)
        path = self.dir / "inventory-custom.yml"
        path.write_text(yaml.safe_dump(data))
        return path


@dataclass
class Lab(LabDir):
    """A XenAPI lab pool, read through rollup's XenAPI driver."""

    def snapshot(self) -> Pool:
        driver = XenApiDriver(
            Connection(self.running.url, self.running.user, self.running.password)
        )
        try:
            return driver.snapshot()
        finally:
            driver.close()

    def pending(self) -> dict[str, tuple[str, ...]]:
        """What each host (by name) has pending, as its updater plugin says."""
        driver = XenApiDriver(
            Connection(self.running.url, self.running.user, self.running.password)
        )
        try:
            names = {h.id: h.name for h in driver.snapshot().hosts}
            found = driver.pending_updates().hosts
            return {names[i]: tuple(u.label for u in p.updates) for i, p in found.items()}
        finally:
            driver.close()


def run_rollup(state: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real `rollup` command, as a user or a pipeline runs it (no terminal)."""
    return subprocess.run(
        [ROLLUP, *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env(),
    )


def start_rollup(state: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ROLLUP, *args, "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env(),
    )


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("ROLLUP_API_PASSWORD", None)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def read_events(stream: Any, until: Any) -> list[dict[str, Any]]:
    """Read JSON events from a child's stdout until `until(event)` is true."""
    seen: list[dict[str, Any]] = []
    for line in stream:
        event = json.loads(line)
        seen.append(event)
        if until(event):
            break
    return seen


def start_lab(
    directory: Path,
    fill: tuple[float, float] = (0.5, 0.75),
    *,
    hosts: int = 4,
    vms: int = 24,
    ssh: bool = True,
    network: str | None = None,
    speed: float = SPEED,
    **scenario: Any,
) -> Lab:
    """A lab pool in `directory` (lab/, state/, faults.yml), on its own loopback /24.

    By default the XCP-ng 8.2 pool most tests were written for: a release upgrade by the
    lab's playbook (yum), checked against the target version. `scenario` overrides
    RunningLab.start's flavor, release, update and up_to_date."""
    directory.mkdir(parents=True, exist_ok=True)
    faults = directory / "faults.yml"
    faults.write_text("{}\n")
    running = RunningLab.start(
        hosts=hosts,
        vms=vms,
        seed=1,
        speed=speed,
        ssh=ssh,
        port=0,
        directory=directory / "lab",
        faults=str(faults),
        network=network or loopback.network(next(_networks)),
        fill=fill,
        **{"release": "8.2.1", "update": "playbook", **scenario},
    )
    return Lab(running, directory / "lab", directory / "state", faults)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    started = start_lab(tmp_path)
    try:
        yield started
    finally:
        started.running.stop()


@pytest.fixture
def roomy_lab(tmp_path: Path) -> Iterator[Lab]:
    """A pool with room to spare: it can lose a host and still empty another."""
    started = start_lab(tmp_path, fill=(0.3, 0.35))
    try:
        yield started
    finally:
        started.running.stop()
