"""VMs whose updates ask for a restart (the `restart_vm` guidance), once every host is done.

A VM restart is downtime for the guest, so rollup only lists them (a warning naming each)
unless the policy says `rollup_restart_vms: true`; then each is rebooted where it runs,
as Xen Orchestra does after its rolling pool update. Idempotent: xapi clears the guidance
of a VM that restarted, so a resumed run restarts only those still waiting.
"""

from __future__ import annotations

from collections.abc import Callable

from rollup.errors import DriverError
from rollup.run.context import RunContext
from rollup.text.plurals import noun, verb

RESTART_VM = "restart_vm"
Say = Callable[..., None]  # the rollout's _say(text, level="info")


async def restart_guided_vms(ctx: RunContext, say: Say) -> None:
    pool = await ctx.snapshot()
    due = [vm for vm in pool.vms if vm.running and RESTART_VM in vm.pending_guidances]
    if not due:
        return
    names = ", ".join(vm.name for vm in due)
    if not ctx.policy.restart_vms:
        need = verb(len(due), "needs", "need")
        say(
            f"{noun(len(due), 'VM')} {need} a restart to use their updates (restart_vm):"
            f" {names}; restart them when it suits them, or set rollup_restart_vms: true",
            "warning",
        )
        return
    for vm in due:
        try:
            await ctx.call(ctx.driver.restart_vm, vm.id)
        except DriverError as error:
            say(f"VM {vm.name} could not be restarted: {error.message}", "warning")
            continue
        say(f"VM {vm.name} restarted where it runs: its updates asked for it (restart_vm)")
