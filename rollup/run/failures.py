"""What a run says and decides when hosts fail: what each failure leaves behind, and
whether the run goes on (its failure budget, rollup_max_failed_hosts) or takes its
on-failure action (pause, abort; `continue` goes on until the budget is spent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rollup.drivers import registry
from rollup.model import Policy
from rollup.run.context import RunContext
from rollup.run.host_upgrade import OUT_OF_SERVICE, HostUpgrade
from rollup.text.plurals import count

Say = Callable[..., None]  # the rollout's _say(text, level="info", host=None)


def within_budget(policy: Policy, failed: int) -> str:
    """Why the run goes on after `failed` hosts failed (a warning to say), or "" when it
    takes its on-failure action now."""
    budget = policy.max_failed_hosts
    if policy.on_failure == "continue" and budget is None:
        return f"{count(failed, 'host')} failed so far; on-failure continue: going on"
    if budget is not None and failed <= budget:
        return (
            f"{count(failed, 'host')} failed so far, within rollup_max_failed_hosts {budget}:"
            " going on with the other hosts"
        )
    return ""


def over_budget(policy: Policy, failed: int) -> str:
    """The reason a `continue` run stops: more hosts failed than its budget allows."""
    return (
        f"{count(failed, 'host')} failed, more than rollup_max_failed_hosts"
        f" {policy.max_failed_hosts}: the run stops here"
    )


def say_what_is_left(ctx: RunContext, failed: Sequence[HostUpgrade], say: Say) -> None:
    first = failed[0]
    if (first.failed_in or "?") in OUT_OF_SERVICE:
        say(
            f"{first.name} stays disabled until the run resumes; its VMs run on the other hosts",
            "warning",
            first.host,
        )
    for upgrade in failed:
        stopped = ctx.journal.recall_prefix(ctx.run_id, upgrade.host, "stopped:")
        for name in stopped.values():
            say(
                f"{name} stays shut down until {upgrade.name} is upgraded: it cannot run"
                f" elsewhere (`rollup resume {ctx.run_id}` starts it again)",
                "warning",
                upgrade.host,
            )


def say_what_abort_left(ctx: RunContext, upgrades: Sequence[HostUpgrade], say: Say) -> None:
    """Where an abort left each host it stopped, and why: nothing out of service without
    a reason printed."""
    for upgrade in upgrades:
        if upgrade.state != "failed" or upgrade.error is None:
            continue
        if upgrade.failed_in in OUT_OF_SERVICE:
            say(
                f"{upgrade.name} stays disabled: the abort stopped it while"
                f" {upgrade.failed_in} ({upgrade.error.message}); check it, enable it"
                f" ({registry.terms(ctx.driver.name).enable_host}), then run rollup again",
                "warning",
                upgrade.host,
            )
        else:
            say(f"{upgrade.name}: {upgrade.error.message}", "warning", upgrade.host)
        stopped = ctx.journal.recall_prefix(ctx.run_id, upgrade.host, "stopped:")
        for name in stopped.values():
            say(f"{name} stays shut down: it can run only on {upgrade.name}", "warning", None)
