"""A playbook against one host of the run: the patch and the pre-/post-host hooks.

Its tasks go out as AnsibleTask events while it runs; a play that fails becomes a
`HostFailed` whose evidence is the end of the play's output. That output is what the
playbook printed, which may go to the journal, the log, JUnit and the TUI: rollup puts
none of its own secrets in the extra vars (only the run id, the host's name and the
target version), so none of them can be echoed there.
"""

from __future__ import annotations

from rollup.errors import HostFailed, last_lines
from rollup.remote import PatchResult
from rollup.run.context import RunContext
from rollup.run.events import AnsibleTask


async def play_on_host(
    ctx: RunContext, host: str, host_name: str, playbook: str, what: str
) -> PatchResult:
    """Run `playbook` against `host` (an id); `what` names it in the failure message."""
    remote = ctx.remotes.get(host)
    if remote is None:
        raise HostFailed(f"{host_name} has no inventory entry to reach it by SSH")

    def on_task(task: str, status: str, message: str) -> None:
        ctx.bus.emit(
            AnsibleTask(
                ctx.run_id,
                host=host,
                host_name=host_name,
                playbook=playbook,
                task=task,
                status=status,
                message=message,
            )
        )

    def cancelled() -> bool:
        return ctx.cancelled

    extravars = {"rollup_run_id": ctx.run_id, "rollup_host_name": host_name}
    if ctx.policy.target_version:
        extravars["rollup_target_version"] = ctx.policy.target_version
    result: PatchResult = await ctx.call(
        ctx.patcher.play, remote, playbook, extravars, on_task, cancelled
    )
    if not result.ok:
        where = f" at task {result.failed_task!r}" if result.failed_task else ""
        raise HostFailed(
            f"{what} playbook failed{where}: {result.message}"
            + (f" (full output: {result.output_file})" if result.output_file else ""),
            "PLAYBOOK_FAILED",
            last_lines(result.output_tail),
        )
    return result
