"""What a run that is not going on left out of service, read from its journal.

A paused, detached or dead run (no process carries it on) may have left hosts disabled
(one failed, or its controller stopped mid-host) and VMs shut down that can run only on
such a host. `rollup abort` of such a run finishes it here, at once, with nothing done to
the pool (nothing downloaded, started or moved): it says what stays out of service and
the command that brings each back.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rollup.drivers import Terms
from rollup.errors import EXIT_ABORTED
from rollup.run.events import EventBus, Message, RunFinished, RunStateChanged
from rollup.run.host_upgrade import BACK_IN_SERVICE, OUT_OF_SERVICE
from rollup.run.journal import Journal, JournalSink, RunRecord

# A host whose run stopped in one of these is disabled, maybe empty; one that failed in
# one of OUT_OF_SERVICE stays so (a failure before the patch puts it back in service).
IN_FLIGHT = ("disabling", "evacuating", *OUT_OF_SERVICE)


@dataclass(frozen=True)
class HostLeft:
    name: str
    state: str  # where it stopped: a host state, or the state it failed in
    why: str


@dataclass(frozen=True)
class VmLeft:
    id: str
    name: str
    host_name: str  # the only host it can run on


@dataclass(frozen=True)
class LeftBehind:
    hosts: tuple[HostLeft, ...]
    vms: tuple[VmLeft, ...]


def left_behind(journal: Journal, run_id: str) -> LeftBehind:
    hosts: list[HostLeft] = []
    vms: list[VmLeft] = []
    for host, last in sorted(journal.host_states(run_id).items(), key=lambda i: i[1].host_name):
        failed_in = str(last.detail.get("failed_in") or "")
        # A failed host the run put back in service (nothing was patched) is not left out.
        back = journal.recall(run_id, host, BACK_IN_SERVICE) is not None
        if last.state == "failed" and failed_in in OUT_OF_SERVICE and not back:
            error = str(last.detail.get("error") or "see the report")
            why = f"failed while {failed_in}: {error.removeprefix(failed_in + ': ')}"
            hosts.append(HostLeft(last.host_name, failed_in, why))
        elif last.state in IN_FLIGHT:
            hosts.append(
                HostLeft(last.host_name, last.state, f"its run stopped while {last.state}")
            )
        for key, name in journal.recall_prefix(run_id, host, "stopped:").items():
            vms.append(VmLeft(key, str(name), last.host_name))
    return LeftBehind(tuple(hosts), tuple(vms))


def carried_on(record: RunRecord) -> bool:
    """Whether a live process on this controller still carries the run."""
    if record.controller != socket.gethostname() or record.pid == os.getpid():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abort_now(journal: Journal, record: RunRecord, terms: Terms) -> list[str]:
    """Finish a run no process carries on as aborted; what it says, a line each."""
    left = left_behind(journal, record.id)
    lines = []
    for host in left.hosts:
        enable = terms.enable_host.replace("<node>", host.name)
        lines.append(
            f"{host.name} stays out of service ({host.why}): check it, then enable it ({enable})"
        )
    for vm in left.vms:
        start = (
            terms.start_vm.replace("<vm>", vm.name)
            .replace("<id>", vm.id)
            .replace("<host>", vm.host_name)
        )
        lines.append(f"{vm.name} stays shut down: it can run only on {vm.host_name} ({start})")
    reason = "aborted by the operator while " + record.state
    bus = EventBus(record.pool)
    bus.subscribe(JournalSink(journal), essential=True)
    for line in lines:
        bus.emit(Message(record.id, level="warning", text=line))
    journal.set_run_state(record.id, "aborted", outcome="aborted", message=reason)
    bus.emit(RunStateChanged(record.id, state="aborted", previous=record.state, reason=reason))
    bus.emit(_finished(journal, record.id, reason))
    return lines


def _finished(journal: Journal, run_id: str, reason: str) -> RunFinished:
    states = [t.state for t in journal.host_states(run_id).values()]
    last = None
    for _, body in journal.events(run_id):
        if body.get("kind") == "run-finished":
            last = body
    return RunFinished(
        run_id,
        outcome="aborted",
        exit_code=EXIT_ABORTED,
        message=reason,
        hosts_done=states.count("done"),
        hosts_failed=states.count("failed"),
        hosts_skipped=states.count("skipped"),
        migrations=int(last["migrations"]) if last else 0,
        seconds=float(last["seconds"]) if last else 0.0,
    )
