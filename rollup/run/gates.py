"""Health gates around each host: what must be true before its turn starts, and after.

Three kinds, each answering "" (passes) or why it does not:
- prometheus: Prometheus' firing alerts (`ALERTS{alertstate="firing"}`, as kured asks)
  whose alertname matches `match` (any firing alert when empty) block the host;
- http: a GET answers `status` (200) and, when `match` is given, a body that holds it;
- command: a local command exits 0; it sees ROLLUP_POOL, ROLLUP_HOST and ROLLUP_GATE
  (before_host or after_host) in its environment, never a template of them.
A failing gate is asked again every `interval_seconds` until it passes or
`timeout_seconds` pass; meanwhile the run says it waits (GateChecked events, which the
report draws on its timeline); then the host fails with the gate's reason, and the run
follows its on-failure policy. A gate that cannot be asked (connection refused, no
JSON) fails closed: it blocks, with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from rollup.errors import HostFailed
from rollup.model import Gate
from rollup.run.context import RunContext
from rollup.run.events import GateChecked
from rollup.text.quoting import one_line

ASK_TIMEOUT = 10.0  # seconds one HTTP gate may take to answer
COMMAND_TIMEOUT = 120.0
FIRING = 'ALERTS{alertstate="firing"}'


def ask(gate: Gate, pool: str, host: str, phase: str) -> str:
    """Whether the gate passes now: "" if it does, else why not (blocking)."""
    try:
        if gate.kind == "prometheus":
            return _prometheus(gate)
        if gate.kind == "http":
            return _http(gate)
        return _command(gate, pool, host, phase)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        return f"could not be asked ({one_line(str(error), 160)})"


def _prometheus(gate: Gate) -> str:
    query = urllib.parse.urlencode({"query": FIRING})
    url = f"{gate.target.rstrip('/')}/api/v1/query?{query}"
    with urllib.request.urlopen(url, timeout=ASK_TIMEOUT) as reply:
        answer = json.loads(reply.read())
    if answer.get("status") != "success":
        return f"Prometheus answered {answer.get('error', answer.get('status'))}"
    pattern = re.compile(gate.match) if gate.match else None
    firing = sorted(
        {
            str(item["metric"].get("alertname", "?"))
            for item in answer["data"]["result"]
            if pattern is None or pattern.search(str(item["metric"].get("alertname", "")))
        }
    )
    return f"alerts firing: {', '.join(firing)}" if firing else ""


def _http(gate: Gate) -> str:
    try:
        with urllib.request.urlopen(gate.target, timeout=ASK_TIMEOUT) as reply:
            status, body = reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        status, body = error.code, ""
    if status != gate.status:
        return f"answered {status}, not {gate.status}"
    if gate.match and not re.search(gate.match, body):
        return f"answered {status} without {gate.match!r} in its body"
    return ""


def _command(gate: Gate, pool: str, host: str, phase: str) -> str:
    env = {**os.environ, "ROLLUP_POOL": pool, "ROLLUP_HOST": host, "ROLLUP_GATE": phase}
    done = subprocess.run(
        shlex.split(gate.target),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode == 0:
        return ""
    said = (done.stdout + done.stderr).strip().splitlines()
    return f"exited {done.returncode}" + (f": {one_line(said[-1], 160)}" if said else "")


async def wait_for(ctx: RunContext, host: str, host_name: str, phase: str) -> str:
    """Every gate of `phase` passing, waiting on those that fail (said when it starts, when
    its reason changes and when it passes); the detail to say, or HostFailed once one has
    failed for longer than the timeout."""
    gates = getattr(ctx.policy.gates, phase)
    if not gates:
        return ""
    timeout = ctx.policy.gates.timeout_seconds
    interval = ctx.policy.gates.interval_seconds
    started = time.monotonic()
    waited = False
    for gate in gates:
        said = ""
        while True:
            reason = await ctx.call(ask, gate, ctx.pool_name, host_name, phase)
            elapsed = time.monotonic() - started
            if not reason:
                if waited:
                    ctx.bus.emit(GateChecked(ctx.run_id, host, host_name, phase, gate.name,
                                             ok=True, reason="", waited=elapsed))  # fmt: skip
                break
            if reason != said:  # said again only when the reason changes
                ctx.bus.emit(GateChecked(ctx.run_id, host, host_name, phase, gate.name,
                                         ok=False, reason=reason, waited=elapsed))  # fmt: skip
                said = reason
            waited = True
            if elapsed + interval > timeout or ctx.cancelled:
                raise HostFailed(
                    f"health gate {gate.name} ({phase.replace('_', ' ')}) still fails after"
                    f" {elapsed:.0f}s: {reason}",
                    "GATE_FAILED",
                    (reason,),
                    untouched=phase == "before_host",
                )
            await ctx.sleep(interval)
    waited_for = time.monotonic() - started
    return f"health gates passed (waited {waited_for:.0f}s)" if waited else "health gates pass"
