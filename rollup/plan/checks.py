"""Admission checks: what must hold before a run starts, each with a reason to act on.

Every check has a stable name (`hosts-live`, `hosts-enabled`, `ha`, `run-lock`,
`mixed-versions`, `target-version`, `master-first`, `unmovable-vm`, `capacity`,
`return`) so pipelines can match on it. A check that cannot decide fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rollup.drivers import registry
from rollup.model import VM, Check, Host, Policy, Pool, SkippedHost, UnfinishedRun, version_key
from rollup.plan.placement import BatchOutcome
from rollup.text.plurals import count, verb
from rollup.text.units import format_duration, format_gib


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _all(hosts: int) -> str:
    # "all 1 host" reads wrong: "all" is for many.
    return count(hosts, "host") if hosts == 1 else f"all {count(hosts, 'host')}"


def host_checks(pool: Pool) -> list[Check]:
    terms = registry.terms(pool.driver)
    checks = [
        Check(
            "hosts-live",
            "fail",
            f"host {h.name} is not live ({terms.not_live}): bring it back "
            "or remove it from the pool before upgrading",
            host=h.id,
        )
        for h in pool.hosts
        if not h.live
    ]
    if not checks:
        live = f"{_all(len(pool.hosts))} {verb(len(pool.hosts), 'is', 'are')} live"
        checks.append(Check("hosts-live", "pass", live))
    disabled = [
        Check(
            "hosts-enabled",
            "fail",
            f"host {h.name} is disabled (in maintenance?): enable it ({terms.enable_host}) "
            "or finish what disabled it, then plan again",
            host=h.id,
        )
        for h in pool.hosts
        if h.live and not h.enabled
    ]
    if not disabled:
        disabled.append(Check("hosts-enabled", "pass", "every live host is enabled"))
    return checks + disabled


def ha_check(pool: Pool, policy: Policy) -> Check:
    if not pool.ha_enabled:
        return Check("ha", "pass", "HA is off")
    if policy.ha == "refuse":
        return Check(
            "ha",
            "fail",
            "HA is on and the policy refuses to touch it: disable HA yourself, "
            "or set ha: disable-and-restore",
        )
    return Check(
        "ha", "warn", "HA is on: rollup disables it for the run and restores it at the end"
    )


def lock_check(pool: Pool, now: float | None, unfinished: UnfinishedRun | None = None) -> Check:
    lock = pool.lock
    if lock is None and unfinished is not None:
        return Check(
            "run-lock",
            "fail",
            f"{unfinished.state} run {unfinished.run_id} (started {_when(unfinished.since)})"
            f" holds the pool: `rollup resume {unfinished.run_id}` or"
            f" `rollup abort {unfinished.run_id}`",
        )
    if lock is None:
        return Check("run-lock", "pass", "no other run holds the pool")
    holder = f"run {lock.run_id} by {lock.controller} (pid {lock.pid}) since {_when(lock.started)}"
    if now is not None and lock.expires <= now:
        return Check(
            "run-lock",
            "warn",
            f"stale lock of {holder}, expired {_when(lock.expires)}: "
            "use --break-lock if that run is gone",
        )
    unknown = " (no clock given, so it cannot be judged stale)" if now is None else ""
    return Check(
        "run-lock",
        "fail",
        f"the pool is locked by {holder}, until {_when(lock.expires)}{unknown}: "
        f"wait for it, or `rollup resume {lock.run_id}` if it was interrupted"
        " (--break-lock takes over only an expired lock)",
    )


def version_checks(
    pool: Pool, policy: Policy, upgrading: Sequence[Host], at_target: Sequence[SkippedHost]
) -> list[Check]:
    checks: list[Check] = []
    rolling = registry.terms(pool.driver).rolling_upgrade
    versions = sorted({h.version for h in pool.hosts}, key=version_key)
    if len(versions) > 1:
        mode = f"; {rolling} is {'on' if pool.rolling_upgrade else 'off'}" if rolling else ""
        checks.append(
            Check(
                "mixed-versions",
                "warn",
                f"hosts run different versions ({', '.join(versions)}){mode}: VMs never move"
                " from a newer to an older host",
            )
        )
    elif pool.rolling_upgrade:
        checks.append(
            Check(
                "mixed-versions",
                "warn",
                f"every host runs {versions[0]} but {rolling or 'rolling upgrade mode'} is still"
                " on: "
                "an earlier upgrade may not have finished; check the pool before going on",
            )
        )
    else:
        checks.append(Check("mixed-versions", "pass", "every host runs the same version"))
    known = [h for h in upgrading if h.pending is not None]
    synced = _as_of_sync(pool)
    if policy.target_version is None and not upgrading:
        checks.append(
            Check("updates", "pass", f"every host has nothing pending{synced}: nothing to do")
        )
    elif policy.target_version is None and known:
        checks.append(
            Check(
                "updates",
                "pass",
                f"{count(len(upgrading), 'host')} with updates pending, {len(at_target)} with"
                f" nothing pending{synced}",
            )
        )
    elif policy.target_version is None:
        checks.append(
            Check(
                "target-version",
                "warn",
                f"no target version: {_all(len(upgrading))} will be patched and rebooted",
            )
        )
    elif not upgrading:
        checks.append(
            Check(
                "target-version",
                "pass",
                f"every host is already at {policy.target_version} or newer: nothing to do",
            )
        )
    else:
        target = version_key(policy.target_version)
        major = [h for h in upgrading if version_key(h.version) < target]
        patched = f", {len(upgrading) - len(major)} to patch" if len(major) < len(upgrading) else ""
        checks.append(
            Check(
                "target-version",
                "pass",
                f"{count(len(major), 'host')} to upgrade to {policy.target_version}{patched}, "
                f"{len(at_target)} already there",
            )
        )
    return checks


def master_check(pool: Pool, policy: Policy, skipped: Sequence[SkippedHost]) -> list[Check]:
    """A pool with a master upgrades it before any member; a skipped master forbids it."""
    master = next((h for h in pool.hosts if h.is_master), None)
    if master is None:
        return []
    reason = next((s.reason for s in skipped if s.host == master.id), None)
    target = policy.target_version
    if reason is None or (target and version_key(master.version) >= version_key(target)):
        return []
    if master.pending is not None and not master.pending.updates and not target:
        return []  # a patch leaves versions alone: members may go first
    status = "fail" if target else "warn"
    return [
        Check(
            "master-first",
            status,
            f"master {master.name} is skipped ({reason}) but"
            f" {registry.terms(pool.driver).keeper} requires the master upgraded before the"
            " other hosts: free it, or use unmovable: shutdown-restart",
            host=master.id,
        )
    ]


def unmovable_checks(
    pinned: dict[str, list[VM]], hosts: dict[str, Host], policy: Policy, downtime: dict[str, float]
) -> list[Check]:
    checks: list[Check] = []
    for host_id, vms in pinned.items():
        host = hosts[host_id]
        for vm in vms:
            why = "; ".join(b.reason for b in vm.blockers)
            codes = ", ".join(b.code for b in vm.blockers)
            said = f"VM {vm.name} on {host.name} cannot be live-migrated: {why} ({codes})"
            if policy.unmovable == "fail":
                status, then = (
                    "fail",
                    "the policy (unmovable: fail) refuses the run; move or detach what "
                    "pins it, shut it down, or choose skip-host or shutdown-restart",
                )
            elif policy.unmovable == "skip-host":
                status, then = "warn", f"host {host.name} will be skipped (unmovable: skip-host)"
            else:
                status, then = (
                    "warn",
                    "it will be shut down before the upgrade and started again after: "
                    f"about {format_duration(downtime.get(host_id, 0.0))} of downtime",
                )
            checks.append(Check("unmovable-vm", status, f"{said}; {then}", host=host_id, vm=vm.id))
    if not checks:
        checks.append(
            Check("unmovable-vm", "pass", "every running VM on the hosts to upgrade can move")
        )
    return checks


def capacity_checks(
    outcomes: Sequence[BatchOutcome], pool: Pool, headroom: float = 0.0
) -> list[Check]:
    checks: list[Check] = []
    kept = f" (less {headroom:.0%} headroom)" if headroom else ""
    fix = (
        "free memory there, lower rollup_headroom or add a host"
        if headroom
        else ("free memory there or add a host")
    )
    capacity = {h.id: h.capacity for h in pool.hosts}
    names = {h.id: h.name for h in pool.hosts}
    for outcome in outcomes:
        for host_id, vms in outcome.unplaced.items():
            if not vms:
                continue
            short = sum(vm.memory for vm in vms)
            name = names[host_id]
            homeless = ", ".join(f"{vm.name} ({format_gib(vm.memory)})" for vm in vms[:5])
            if len(vms) > 5:
                homeless += f" and {count(len(vms) - 5, 'more VM')}"
            checks.append(
                Check(
                    "capacity",
                    "fail",
                    f"not enough memory elsewhere to evacuate {name}: short by "
                    f"{count(short, 'byte')} ({format_gib(short)}), no place for {homeless}; "
                    f"the enabled, live hosts not older than {name} have "
                    f"{format_gib(outcome.free_outside)} free{kept} in all, "
                    f"{format_gib(outcome.largest_free)} at most on one; {fix}",
                    host=host_id,
                )
            )
    if checks:
        return checks
    peak: tuple[float, str] | None = None
    for outcome in outcomes:
        for h, used in outcome.memory_peak.items():
            if capacity[h] > 0 and (peak is None or (used / capacity[h], h) > peak):
                peak = (used / capacity[h], h)
    busiest = f"; fullest moment: {names[peak[1]]} at {peak[0]:.0%}" if peak else ""
    return [Check("capacity", "pass", f"every host can be evacuated in its turn{busiest}")]


def return_checks(outcomes: Sequence[BatchOutcome], pool: Pool) -> list[Check]:
    names = {h.id: h.name for h in pool.hosts}
    return [
        Check(
            "return",
            "warn",
            f"VM {move.vm.name} stays on {names[move.dest]}: it is newer than the target, "
            f"so the VM cannot go back to {names[move.source]}",
            host=move.dest,
            vm=move.vm.id,
        )
        for outcome in outcomes
        for move in outcome.unreturned
    ]


def _as_of_sync(pool: Pool) -> str:
    """XenServer answers what is pending from its last sync: say when that was, since
    what was published after it is not in the plan."""
    if pool.updates_synced_at is None:
        return ""
    when = _when(pool.updates_synced_at)
    return f" (as of the pool's last sync, {when}; rollup_sync: true syncs first)"


def installer_checks(pool: Pool, policy: Policy, upgrading: Sequence[Host]) -> list[Check]:
    """A major upgrade: every host below the target can boot the network installer, asked
    of each before anything changes (the plugin's testUrl and testSafe2Upgrade)."""
    below = [h for h in upgrading if policy.target_version and _below(h, policy.target_version)]
    if not below:
        return []
    if policy.installer_url is None:
        if policy.update == "playbook":
            return []  # the playbook upgrades them (a yum release upgrade)
        names = ", ".join(h.name for h in below)
        return [
            Check(
                "installer",
                "fail",
                f"{names} {verb(len(below), 'runs', 'run')} below {policy.target_version}: a"
                " major upgrade needs rollup_installer_url (the network installer), or"
                " rollup_update: playbook",
            )
        ]
    failing = [h for h in below if h.installer]
    if failing:
        return [
            Check("installer", "fail", f"{h.name} cannot boot the installer: {h.installer}", h.id)
            for h in failing
        ]
    return [
        Check(
            "installer",
            "pass",
            f"{count(len(below), 'host')} can boot the installer at {policy.installer_url}",
        )
    ]


def _below(host: Host, target: str) -> bool:
    return version_key(host.version) < version_key(target)
