"""One playbook against one host through ansible-runner, its tasks streamed as events.

A play's failure is a result, not an exception: rc 2 (a task failed) and rc 4 (host
unreachable) come back in `PlayResult` and the rollout decides what they mean. Each run
gets a fresh private data dir (runner silently prefers files an earlier run left there)
that is deleted afterwards, because it holds the inventory and extra vars, which may
carry secrets; what stays is the play's output, appended to one log file per host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import ansible_runner

from rollup.errors import BadInput
from rollup.remote import RemoteHost, processes

TaskStatus = Literal["ok", "changed", "failed", "skipped", "unreachable"]
TAIL_LINES = 30
MSG_CHARS = 300
# How often runner looks at the cancel flag (its default is every 5 s).
CANCEL_POLL_SECONDS = 0.2
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class TaskEvent:
    """One task's outcome on the host, as ansible reports it."""

    host: str
    task: str
    status: TaskStatus
    msg: str = ""


@dataclass(frozen=True)
class PlayResult:
    host: str
    playbook: str
    rc: int  # ansible-playbook's: 0 ok, 2 a task failed, 4 host unreachable
    status: str  # runner's: successful, failed, timeout, canceled
    failed_task: str | None  # the task that failed or found the host unreachable
    facts: Mapping[str, Any] = field(default_factory=dict)  # set_fact results
    output_file: Path | None = None
    output_tail: str = ""
    message: str = ""  # the failed task's message, one line

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    @property
    def unreachable(self) -> bool:
        return self.rc == 4


def inventory(host: RemoteHost) -> dict[str, Any]:
    """A one-host inventory from the host's own inventory variables.

    rollup's own secrets (the pool's API password) are not among them: the inventory
    leaves them out (runner writes this inventory to disk in clear, vaulted or not).
    """
    host_vars: dict[str, Any] = dict(host.ansible_vars)
    if host.connection == "local":
        host_vars.setdefault("ansible_connection", "local")
        host_vars.setdefault("ansible_python_interpreter", sys.executable)
        if host.environment:
            host_vars.setdefault("rollup_lab_env", dict(host.environment))
    else:
        host_vars.setdefault("ansible_host", host.address)
        host_vars.setdefault("ansible_port", host.port)
        host_vars.setdefault("ansible_user", host.user)
        if host.key_file:
            host_vars.setdefault("ansible_ssh_private_key_file", host.key_file)
        if host.known_hosts and host.check_host_keys:
            host_vars.setdefault(
                "ansible_ssh_common_args", f"-o UserKnownHostsFile={host.known_hosts}"
            )
    return {"all": {"hosts": {host.name: host_vars}}}


def environment(host: RemoteHost, control_dir: Path) -> dict[str, str]:
    """ansible-playbook's environment for one run."""
    return {
        # runner starts `ansible-playbook` by name: it must be next to our interpreter.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_PIPELINING": "True",
        # A persistent master connection outlives a reboot and makes a host that is
        # down look reachable: one connection per task, control sockets per run.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": str(host.check_host_keys),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_TIMEOUT": "10",
    }


def play(
    host: RemoteHost,
    playbook: Path | str,
    extra_vars: Mapping[str, Any] | None = None,
    *,
    output_dir: Path,
    on_event: Callable[[TaskEvent], None] | None = None,
    cancel: threading.Event | None = None,
    timeout: float | None = None,
) -> PlayResult:
    """Run `playbook` against `host` only and return how it went.

    `on_event` gets every task's outcome as it happens (from runner's thread: hand it on,
    do not block). Setting `cancel` stops the play within a fraction of a second (status
    "canceled"), as does `timeout` (status "timeout"); over SSH, a command already running
    on the host is left to finish there.
    """
    path = Path(playbook).resolve()
    if not path.is_file():
        raise BadInput(f"playbook not found: {path}")
    _private_dirs(output_dir)
    output_file = output_dir / f"{_SAFE_NAME.sub('_', host.name)}.ansible.log"
    # A play prints whatever its tasks print: the log is the user's alone, like the journal.
    output_file.touch(mode=0o600)
    collector = _Collector(host.name, on_event)
    private = Path(tempfile.mkdtemp(prefix=".ansible-run-", dir=output_dir))
    # ssh's control socket path must stay under 108 bytes: a short private dir in the
    # system's temp dir, not under a state dir of any depth.
    control = Path(tempfile.mkdtemp(prefix="rollup-cp-"))
    stop = _Stop(private, cancel, timeout)
    # Given as a dict, runner would put the extra vars on ansible-playbook's command line,
    # where any local user can read them (ps); in its env/extravars file they stay private.
    extravars_file = private / "env" / "extravars"
    extravars_file.parent.mkdir(mode=0o700)
    extravars_file.touch(mode=0o600)
    extravars_file.write_text(json.dumps(_unsafe(dict(extra_vars or {}))))
    # Runner ignores its `settings=` argument when env/settings is missing: use the file.
    (private / "env" / "settings").write_text(json.dumps({"pexpect_timeout": CANCEL_POLL_SECONDS}))
    try:
        with output_file.open("a", encoding="utf-8") as log:
            log.write(f"=== {datetime.now(UTC).isoformat()} {path} on {host.name}\n")
            log.flush()
            collector.log = log
            runner = ansible_runner.run(
                private_data_dir=str(private),
                playbook=str(path),
                inventory=inventory(host),
                limit=host.name,
                envvars=environment(host, control),
                suppress_env_files=True,
                quiet=True,
                event_handler=collector.handle,
                cancel_callback=stop.check,
            )
            if not collector.lines:
                # ansible-playbook never started (e.g. not installed): keep what runner saw.
                text = runner.stdout.read() if runner.stdout else ""
                collector.write(text)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(control, ignore_errors=True)
    return PlayResult(
        host=host.name,
        playbook=str(path),
        rc=int(runner.rc if runner.rc is not None else 254),
        status="timeout" if stop.timed_out else str(runner.status),
        failed_task=collector.failed_task,
        facts=collector.facts,
        output_file=output_file,
        output_tail="\n".join(collector.lines[-TAIL_LINES:]),
        message=collector.failed_msg,
    )


def _unsafe(value: Any) -> Any:
    """Extra vars marked as data for Ansible: a pool's host name like "{{ lookup('pipe',
    ...) }}" is printed as written, never templated (which would run it on this machine)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {key: _unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_unsafe(item) for item in value]
    return value


def _private_dirs(path: Path) -> None:
    """`path` and its missing parents, created 0700 (plain mkdir would make them 0755)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


class _Stop:
    """Runner's cancel callback: stops the play on cancel or timeout.

    Runner alone kills ansible-playbook's process group, but ansible's workers call
    setsid() and would live on (and keep running the task); so the whole tree of this
    run's ansible-playbook (found by its private dir on the command line) is killed here.
    """

    def __init__(
        self, private: Path, cancel: threading.Event | None, timeout: float | None
    ) -> None:
        self.private = str(private)
        self.cancel = cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.timed_out = False

    def check(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        if not self.timed_out and not (self.cancel is not None and self.cancel.is_set()):
            return False
        processes.kill_tree(processes.with_cmdline(self.private))
        return True


class _Collector:
    """Turns runner's raw events into TaskEvents, facts, and the host's log."""

    def __init__(self, host: str, on_event: Callable[[TaskEvent], None] | None) -> None:
        self.host = host
        self.on_event = on_event
        self.log: TextIO | None = None
        self.lines: list[str] = []
        self.facts: dict[str, Any] = {}
        self.failed_task: str | None = None
        self.failed_msg = ""

    def write(self, text: str) -> None:
        if not text:
            return
        self.lines.extend(text.splitlines())
        if self.log is not None:
            self.log.write(text if text.endswith("\n") else text + "\n")
            self.log.flush()

    def handle(self, event: dict[str, Any]) -> bool:
        self.write(event.get("stdout", ""))
        status = _STATUS.get(event.get("event", ""))
        if status is None:
            return True
        data = event.get("event_data", {})
        res = data.get("res") or {}
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "ok" and data.get("task_action") in _SET_FACT:
            self.facts.update(res.get("ansible_facts") or {})
        task = str(data.get("task", ""))
        msg = _message(res, with_stderr=status in ("failed", "unreachable"))
        fatal = status == "unreachable" or (status == "failed" and not data.get("ignore_errors"))
        if fatal and self.failed_task is None:
            self.failed_task = task
            self.failed_msg = msg
        if self.on_event is not None:
            self.on_event(TaskEvent(str(data.get("host", self.host)), task, status, msg))
        return True  # keep the event in runner's artifacts (deleted with the run dir)


_SET_FACT = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
_STATUS: dict[str, TaskStatus] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def _message(res: Mapping[str, Any], with_stderr: bool) -> str:
    """One line: the module's message and, for a failed command, its last line of stderr."""
    msg = str(res.get("msg") or "").strip()
    stderr = str(res.get("stderr") or "").strip() if with_stderr else ""
    if stderr:
        last = stderr.splitlines()[-1].strip()
        msg = f"{msg}: {last}" if msg else last
    line = " ".join(msg.split())
    return line[:MSG_CHARS]
