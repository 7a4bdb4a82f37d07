"""What each host has pending, as the plan renders it: JSON, a change-board section, a cell.

A change board reads, per host, the packages (XCP-ng) or advisories (XenServer) it will
install, their severity, and what installing them demands: a reboot (its VMs moved
away first), a toolstack restart, or nothing beyond the install (a livepatch).
"""

from __future__ import annotations

from typing import Any

from rollup.model import HostStep, Pending, Plan, Update
from rollup.text.plurals import count

# xapi's guidances as a change board says them.
GUIDANCE_WORDS = {
    "reboot_host": "reboot",
    "restart_toolstack": "toolstack restart",
    "restart_device_model": "VMs' device models restarted (live migration)",
    "restart_vm": "VMs need a restart (done only with rollup_restart_vms)",
    "evacuate_host": "host evacuated",
    "reboot_host_on_livepatch_failure": "reboot if a livepatch fails",
    "reboot_host_on_kernel_livepatch_failure": "reboot if the kernel livepatch fails",
    "reboot_host_on_xen_livepatch_failure": "reboot if the Xen livepatch fails",
}


def update_json(update: Update) -> dict[str, Any]:
    return {
        "name": update.name,
        "version": update.version,
        "release": update.release,
        "summary": update.summary,
        "severity": update.severity,
        "size": update.size,
        "livepatch": update.livepatch,
    }


def pending_json(pending: Pending | None) -> list[dict[str, Any]] | None:
    """The host's updates as it reported them; None when it cannot tell."""
    return None if pending is None else [update_json(u) for u in pending.updates]


def step_json(step: HostStep) -> dict[str, Any]:
    """The step's share of the plan's JSON: what it installs and what that demands."""
    pending = step.pending
    return {
        "pending_updates": pending_json(pending),
        "packages": list(pending.packages) if pending else [],
        "guidance": list(pending.guidance) if pending else [],
        "recommended_guidance": list(pending.recommended) if pending else [],
        "reboot": expects_reboot(step),
        "in_place": step.in_place,
        "upgrade": step.upgrade,
    }


def expects_reboot(step: HostStep) -> bool:
    """Whether the plan expects the host to reboot: a major upgrade, or what it installs
    demands it (a host that cannot tell is rebooted as the policy says, at run time)."""
    if step.upgrade:
        return True
    if step.in_place:
        return False
    return step.pending.reboot if step.pending is not None else True


def demands(step: HostStep) -> str:
    """What installing the step's updates demands, in words."""
    if step.upgrade:
        return "network installer, reboot"
    pending = step.pending
    if pending is None:
        return "as the playbook says"
    words = [GUIDANCE_WORDS.get(g, g) for g in pending.guidance]
    if step.in_place:
        words.insert(0, "in place, VMs stay")
    return ", ".join(words) or "nothing beyond the install"


def cell(step: HostStep) -> str:
    """One table cell: how many updates, and the reboot or not."""
    if step.upgrade:
        return "major upgrade"
    if step.pending is None:
        return "?"
    updates = count(len(step.pending.updates), "update")
    return f"{updates}, {'reboot' if expects_reboot(step) else 'no reboot'}"


def installs(plan: Plan) -> list[tuple[HostStep, tuple[Update, ...], str]]:
    """Per host with something pending: its step, what it installs, what follows."""
    return [
        (step, step.pending.updates, demands(step))
        for step in plan.steps
        if step.pending is not None and step.pending.updates
    ]


def markdown(plan: Plan) -> list[str]:
    """The "Updates" section of the plan's Markdown: per host, what it installs."""
    steps = [s for s in plan.steps if s.pending is not None or s.upgrade]
    if not steps:
        return []
    lines = ["## Updates", ""]
    if plan.pool.updates_hash:
        lines += [f"Read from the pool's update repository, hash `{plan.pool.updates_hash}`.", ""]
    for step in steps:
        pending = step.pending
        lines.append(f"### {step.host_name}: {demands(step)}")
        lines.append("")
        if step.upgrade:
            # What the old release has pending does not matter: the new one replaces it.
            lines += [
                f"Major upgrade {step.version_before} → {plan.policy.target_version}, then"
                " the new release's updates, in the same turn",
                "",
            ]
            continue
        if pending is None or not pending.updates:
            continue
        lines += ["| Update | Version | Severity | Summary |", "|---|---|---|---|"]
        for update in pending.updates:
            version = "-".join(part for part in (update.version, update.release) if part)
            livepatch = " (livepatch)" if update.livepatch else ""
            lines.append(
                f"| {_cell(update.name)} | {_cell(version) or '-'} | {update.severity or '-'} |"
                f" {_cell(update.summary) or '-'}{livepatch} |"
            )
        if pending.packages:
            lines += ["", f"Packages: {', '.join(pending.packages)}"]
        lines.append("")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
