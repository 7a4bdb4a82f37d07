"""Pre-staging: every host's updates downloaded before the first host leaves service.

One command per host over SSH (the driver's `prestage_command`, e.g. `yum -y update
--downloadonly`, run by the patcher), many hosts at once, while every host still runs its
VMs; each host's install then takes its packages from its own cache, so its time out of
service is the install and the reboot. A host that cannot be pre-staged is no reason to stop: it
downloads during its install, as it would have anyway, and the log says so.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection

from rollup.errors import RemoteError
from rollup.model import HostStep, Plan
from rollup.plan.prestage import command
from rollup.run.context import RunContext
from rollup.run.events import Message
from rollup.text.plurals import count
from rollup.text.quoting import one_line
from rollup.text.units import format_duration

AT_ONCE = 16  # hosts downloading together: a mirror serves many, but not a whole fleet
TIMEOUT_SECONDS = 1800.0  # a host's download; a slow mirror is slow, not broken


async def download_everywhere(ctx: RunContext, plan: Plan, waiting: Collection[str]) -> None:
    """Pre-stage the hosts in `waiting` (ids) the plan takes out of service, if it says so."""
    line = command(plan.pool.driver)
    steps = [s for s in plan.steps if s.host in waiting and not s.in_place]
    if plan.prestage.method != "ssh" or line is None or not steps:
        return
    unreachable = [step.host_name for step in steps if step.host not in ctx.remotes]
    if unreachable:
        _say(
            ctx,
            "warning",
            f"not pre-staged, no inventory entry to reach them by SSH: {', '.join(unreachable)};"
            " they download during their install",
        )
    todo = [step for step in steps if step.host in ctx.remotes]
    if not todo:
        return
    _say(ctx, "info", f"pre-staging {count(len(todo), 'host')}: `{line}`, {AT_ONCE} at once")
    started = time.monotonic()
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(step: HostStep) -> bool:
        async with gate:
            if ctx.cancelled:
                return False
            try:
                remote = ctx.remotes[step.host]
                rc, out, err = await ctx.call(ctx.patcher.command, remote, line, TIMEOUT_SECONDS)
            except RemoteError as error:
                problem = error.message
            else:
                if rc == 0:
                    said = _what_was_fetched(out)
                    _say(ctx, "info", f"{step.host_name}: pre-staged: {said}", step.host)
                    return True
                problem = f"exit {rc}: {_last_line(err or out)}"
            _say(
                ctx,
                "warning",
                f"{step.host_name}: pre-staging failed ({one_line(problem, 200)});"
                " it downloads during its install",
                step.host,
            )
            return False

    staged = await asyncio.gather(*(one(step) for step in todo))
    took = format_duration(time.monotonic() - started)
    _say(ctx, "info", f"pre-staged {sum(staged)} of {count(len(todo), 'host')} in {took}")


# What the host's package manager says it fetched. yum 3 (XCP-ng 8) ends with `exiting
# because "Download Only" specified`; dnf 4 sums the transaction up ("Upgrade  4
# Packages", "Install  1 Package") and ends with a hint about its cache.
_DNF_SUMMARY = re.compile(r"^(?:Upgrade|Install)\s+(\d+) Packages?$")
_NOTHING = ("Nothing to do.", "No packages marked for update")


def _what_was_fetched(out: str) -> str:
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    # dnf counts kernels apart: they are installed beside the old ones, not upgraded.
    summed = [int(found.group(1)) for line in lines if (found := _DNF_SUMMARY.match(line))]
    if summed:
        return f"{count(sum(summed), 'package')} in its cache"
    if any(line in _NOTHING for line in lines):
        return "nothing to download"
    return _last_line(out) or "nothing to download"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return one_line(lines[-1], 200) if lines else ""


def _say(ctx: RunContext, level: str, text: str, host: str | None = None) -> None:
    ctx.bus.emit(Message(ctx.run_id, level=level, text=text, host=host))
