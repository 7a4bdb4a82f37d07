"""What every reliability case checks once rollup says it is done, and how it drives rollup.

The promise: whatever fails, no running VM is lost or left stopped without cause, no host
is left out of service without a reason printed, and `rollup resume` finishes the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollup.lab.releases import CURRENT_XCP_NG as TARGET_VERSION
from rollup.model import Pool
from rollup.run.journal import Journal
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env

Event = dict[str, Any]


def running(pool: Pool) -> dict[str, str]:
    """Running VMs by uuid → the host they run on."""
    return {vm.id: vm.host or "" for vm in pool.vms if vm.running}


def host_named(pool: Pool, name: str) -> Any:
    return next(h for h in pool.hosts if h.name == name)


def pinned_on(pool: Pool, host_name: str) -> set[str]:
    """VMs that cannot move off a host: the lab's policy shuts them down for its upgrade."""
    host = host_named(pool, host_name)
    return {vm.id for vm in pool.resident(host.id) if vm.blockers}


def assert_vms_whole(before: Pool, now: Pool, stopped_on_purpose: set[str] = frozenset()) -> None:
    """Every VM that ran before runs now, on exactly one host, and nothing else started."""
    ids = [vm.id for vm in now.vms]
    assert len(ids) == len(set(ids)), "a VM is listed twice"
    resident = Counter(vm.id for host in now.hosts for vm in now.resident(host.id))
    twice = {vm: n for vm, n in resident.items() if n > 1}
    assert not twice, f"VMs resident on more than one host: {twice}"
    lost = set(running(before)) - set(running(now)) - set(stopped_on_purpose)
    names = {vm.id: vm.name for vm in before.vms}
    assert not lost, f"running VMs lost: {sorted(names[v] for v in lost)}"
    for vm_id in running(before):
        if vm_id in running(now):
            assert resident[vm_id] == 1, f"{names[vm_id]} runs but is resident on no host"
    started = set(running(now)) - set(running(before))
    assert not started, f"VMs started that were not running: {sorted(started)}"


def assert_finished(lab: Lab, before: Pool, run_id: str, hosts: set[str] | None = None) -> Pool:
    """The job is done: every host upgraded and in service, every VM whole, HA and VMs'
    auto power-on as they were, no lock, and the journal of the run says the same as the
    pool (for `hosts`: those the run upgraded, default all)."""
    after = lab.snapshot()
    for host in after.hosts:
        assert (host.name, host.version, host.enabled, host.live) == (
            host.name,
            TARGET_VERSION,
            True,
            True,
        ), f"{host.name} is not upgraded and in service"
    assert_vms_whole(before, after)
    left = {name: labels for name, labels in lab.pending().items() if labels}
    assert not left, f"updates still pending: {left}"
    assert after.ha_enabled == before.ha_enabled, "HA is not as it was"
    # The lab's pools start VMs with their host (auto_poweron): off for the run (no VM
    # started above), on again once it is done, whatever killed rollup on the way.
    assert lab.running.pool.other_config.get("auto_poweron") == "true", "auto power-on lost"
    assert after.lock is None, f"a run lock is left on the pool: {after.lock}"
    journal = Journal(lab.state)
    try:
        record = journal.run(run_id)
        assert record is not None
        assert (record.state, record.outcome) == ("completed", "completed"), record
        last = {t.host_name: t.state for t in journal.host_states(run_id).values()}
        names = hosts if hosts is not None else {h.name for h in after.hosts}
        assert last == dict.fromkeys(names, "done"), last
    finally:
        journal.close()
    return after


@dataclass
class Controller:
    """A `rollup` child process whose JSON events are read as they come."""

    process: subprocess.Popen[str]
    stderr_path: Path
    events: list[Event] = field(default_factory=list)

    def until(self, predicate: Callable[[Event], bool], timeout: float = 180.0) -> Event:
        """Read events until one matches; fail if the run ends (or hangs) before it."""
        found: list[Event] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                event = json.loads(line)
                self.events.append(event)
                if predicate(event):
                    found.append(event)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        assert found, f"no such event before the run ended:\n{self.stderr()[-3000:]}"
        return found[0]

    @property
    def run_id(self) -> str:
        return next(e["run_id"] for e in self.events if e.get("run_id"))

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 240.0) -> int:
        assert self.process.stdout is not None
        out, _ = self.process.communicate(timeout=timeout)
        self.events.extend(json.loads(line) for line in out.splitlines() if line.strip())
        return self.process.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def start_rollup(lab: Lab, *args: str) -> Controller:
    """`rollup ARGS --json`, stderr to a file so a chatty run can never block on a pipe."""
    lab.state.mkdir(parents=True, exist_ok=True)
    stderr_path = lab.dir.parent / f"rollup-{len(list(lab.dir.parent.glob('rollup-*')))}.err"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [ROLLUP, *args, "--json", "--state-dir", str(lab.state)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env(),
        )
    return Controller(process, stderr_path)


def host_state(name: str, state: str) -> Callable[[Event], bool]:
    return lambda e: e["kind"] == "host-state" and e["host_name"] == name and e["state"] == state


def run_state(state: str) -> Callable[[Event], bool]:
    return lambda e: e["kind"] == "run-state" and e["state"] == state


def latest_run(lab: Lab) -> str:
    journal = Journal(lab.state)
    try:
        return journal.runs(1)[0].id
    finally:
        journal.close()
