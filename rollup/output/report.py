"""Renderings of a Plan: a rich table for the terminal, markdown for a change ticket, and a
JSON document for pipelines (described by rollup/schemas/plan.schema.json).

Human renderings say memory in GiB with one decimal and durations like "12m 30s"; the
JSON keeps exact bytes and seconds, and names every host and VM by id and by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollup import bundled
from rollup.model import Check, HostStep, Move, Plan
from rollup.output import pending
from rollup.plan import prestage
from rollup.text.plurals import count, noun
from rollup.text.units import format_duration, format_gib

# 1.1: pool.flavor "proxmox", pool.inventory_name; 1.2: policy.install_timeout_seconds
SCHEMA_VERSION = "1.2"

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def _moved(moves: Iterable[Move]) -> str:
    moves = tuple(moves)
    if not moves:
        return "-"
    return f"{count(len(moves), 'VM')}, {format_gib(sum(m.memory for m in moves))}"


def _version_after(plan: Plan, step: HostStep) -> str:
    return (plan.policy.target_version or "?") if step.upgrade else "patched"


def _method(plan: Plan) -> str:
    policy = plan.policy
    if policy.update == "playbook":
        how = f"the playbook {policy.playbook.rsplit('/', 1)[-1]} over SSH"
    else:
        limit = format_duration(policy.install_timeout_seconds)
        how = f"the hypervisor's own update service (XAPI), up to {limit} a host"
    installer = f"; major upgrade from {policy.installer_url}" if policy.installer_url else ""
    later = f"updates published after planning: {policy.updates}"
    return f"{how}; reboot {policy.reboot}; {later}{installer}"


def _failures(plan: Plan) -> str:
    policy = plan.policy
    retries = (
        f"a failed step is tried {count(policy.retries, 'more time')} (after"
        f" {format_duration(policy.retry_delay_seconds)}, doubling)"
        if policy.retries
        else "a failed step is not retried"
    )
    action = "stop (resumable)" if policy.on_failure == "continue" else policy.on_failure
    if policy.max_failed_hosts is not None:
        limit = count(policy.max_failed_hosts, "host")
        stop = f"{action} once more than {limit} failed"
    elif policy.on_failure == "continue":
        stop = "go on whatever fails"
    else:
        stop = f"{action} at the first failed host"
    return f"{retries}; {stop}"


def _summary(plan: Plan) -> str:
    return (
        f"Pool {plan.pool_title}: {len(plan.steps)} of {count(len(plan.pool.hosts), 'host')} to "
        f"upgrade in {count(len(plan.batches), 'batch')}, strategy {plan.policy.strategy}; "
        f"{count(plan.migrations, 'migration')} ({format_gib(plan.bytes_moved)}); "
        f"about {format_duration(plan.estimate_seconds)}"
    )


def _verdict(plan: Plan) -> str:
    if plan.feasible:
        return "Feasible"
    failed = sorted({c.name for c in plan.checks if c.status == "fail"})
    return f"REFUSED: failing {noun(len(failed), 'check')} {', '.join(failed)}"


def plan_table(plan: Plan) -> RenderableType:
    """The plan for a terminal: summary, checks (failures in red), batches, skipped hosts."""
    summary = Text(
        f"{_verdict(plan)}. {_summary(plan)}", style="bold" if plan.feasible else "bold red"
    )

    checks = Table(title="Checks", expand=False)
    checks.add_column("Status")
    checks.add_column("Check")
    checks.add_column("Reason", overflow="fold")
    for check in sorted(plan.checks, key=lambda c: ("fail", "warn", "pass").index(c.status)):
        style = _STYLE[check.status]
        checks.add_row(
            Text(check.status.upper(), style=style),
            Text(check.name, style=style),
            Text(check.reason, style="red" if check.status == "fail" else ""),
        )

    batches = Table(title="Batches", caption=plan.concurrency.reason or None)
    zoned = any(step.zone for step in plan.steps)
    for column in ("Batch", "Zone" if zoned else "", "Host", "Version", "Updates", "Out"):
        if column:
            batches.add_column(column)
    for column in ("Back", "Stop/start", "Estimate"):
        batches.add_column(column)
    for batch in plan.batches:
        for i, step in enumerate(batch.steps):
            zone = (step.zone or "-",) if zoned else ()
            batches.add_row(
                str(batch.index + 1) if i == 0 else "",
                *zone,
                step.host_name,
                f"{step.version_before} → {_version_after(plan, step)}",
                pending.cell(step),
                _moved(step.evacuate),
                _moved(step.restore),
                str(len(step.stop)) if step.stop else "-",
                format_duration(step.estimate_seconds),
            )
    parts: list[RenderableType] = [summary, checks, batches]
    rows = pending.installs(plan)
    if rows:
        updates = Table(title="Updates")
        for column in ("Host", "Installs", "Then"):
            updates.add_column(column, overflow="fold")
        for step, installed, then in rows:
            updates.add_row(step.host_name, ", ".join(u.label for u in installed), then)
        parts.append(updates)
    if plan.skipped:
        skipped = Table(title="Skipped hosts")
        skipped.add_column("Host")
        skipped.add_column("Reason", overflow="fold")
        for host in plan.skipped:
            skipped.add_row(host.host_name, host.reason)
        parts.append(skipped)
    parts.append(Text(f"Updates: {_method(plan)}"))
    parts.append(Text(f"Pre-staging: {plan.prestage.reason}"))
    parts.append(Text(f"Estimated total: {format_duration(plan.estimate_seconds)}"))
    return Group(*parts)


def print_plan(plan: Plan, console: Console | None = None, *, file: TextIO | None = None) -> None:
    """Print the table on `console`, or on a new console over `file` (default stdout)."""
    (console or Console(file=file)).print(plan_table(plan))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: Plan) -> str:
    """The plan for a change ticket: summary, checks with reasons, batches, estimate."""
    policy = plan.policy
    lines = [
        f"# Rolling upgrade plan: pool {plan.pool_title}",
        "",
        f"**{_verdict(plan)}.** {_summary(plan)}.",
        "",
        f"- Target version: {policy.target_version or 'none (install what is pending)'}",
        f"- Updates: {_method(plan)}",
        f"- On failure: {_failures(plan)}",
        f"- Strategy: {policy.strategy}; order: {policy.order}",
        f"- Concurrency: {plan.concurrency.reason}",
        f"- Pre-staging: {plan.prestage.reason}",
        f"- Migrations: {plan.migrations} ({format_gib(plan.bytes_moved)})",
        f"- Estimated duration: {format_duration(plan.estimate_seconds)}",
        "",
        "## Checks",
        "",
        "| Status | Check | Reason |",
        "|---|---|---|",
    ]
    for check in plan.checks:
        status = f"**{check.status.upper()}**" if check.status == "fail" else check.status
        lines.append(f"| {status} | {check.name} | {_cell(check.reason)} |")
    lines += ["", "## Batches", ""]
    for batch in plan.batches:
        zone = batch.steps[0].zone if batch.steps else None
        lines += [
            f"### Batch {batch.index + 1}{f', zone {zone}' if zone else ''}"
            f" ({format_duration(batch.estimate_seconds)})",
            "",
            "| Host | Version | Updates | Moves out | Moves back | Stopped and restarted |"
            " Estimate |",
            "|---|---|---|---|---|---|---|",
        ]
        for step in batch.steps:
            lines.append(
                f"| {_cell(step.host_name)} | {step.version_before} → "
                f"{_version_after(plan, step)} | {pending.cell(step)} | {_moved(step.evacuate)} | "
                f"{_moved(step.restore)} | {len(step.stop) or '-'} | "
                f"{format_duration(step.estimate_seconds)} |"
            )
        lines.append("")
    lines += pending.markdown(plan)
    if plan.skipped:
        lines += ["## Skipped hosts", "", "| Host | Reason |", "|---|---|"]
        lines += [f"| {_cell(s.host_name)} | {_cell(s.reason)} |" for s in plan.skipped]
        lines.append("")
    lines += [
        "## Estimate",
        "",
        f"{count(len(plan.batches), 'batch')}, {count(plan.migrations, 'migration')}, "
        f"{format_gib(plan.bytes_moved)} moved, about {format_duration(plan.estimate_seconds)} "
        f"(migration bandwidth {format_gib(policy.migration_bandwidth)}/s, "
        f"{policy.parallel_migrations} at once per host, "
        f"download {format_duration(policy.download_seconds)}, "
        f"patch {format_duration(policy.patch_seconds)}, "
        f"reboot {format_duration(policy.reboot_seconds)}).",
        "",
    ]
    return "\n".join(lines)


def plan_schema() -> dict[str, Any]:
    """The JSON Schema that `plan_json` output satisfies."""
    text = bundled.read_text("schemas/plan.schema.json")
    schema: dict[str, Any] = json.loads(text)
    return schema


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-ready dict, valid against rollup/schemas/plan.schema.json."""
    pool = plan.pool
    host_names = {h.id: h.name for h in pool.hosts}
    vm_names = {vm.id: vm.name for vm in pool.vms}
    capacity = {h.id: h.capacity for h in pool.hosts}

    def host(host_id: str | None) -> dict[str, str] | None:
        if host_id is None:
            return None
        return {"id": host_id, "name": host_names.get(host_id, host_id)}

    def vm(vm_id: str | None) -> dict[str, str] | None:
        if vm_id is None:
            return None
        return {"id": vm_id, "name": vm_names.get(vm_id, vm_id)}

    def move(m: Move) -> dict[str, Any]:
        return {
            "vm": {"id": m.vm, "name": m.vm_name},
            "source": host(m.source),
            "dest": host(m.dest),
            "memory": m.memory,
        }

    def check(c: Check) -> dict[str, Any]:
        return {
            "name": c.name,
            "status": c.status,
            "reason": c.reason,
            "host": host(c.host),
            "vm": vm(c.vm),
        }

    used = {h.id: 0 for h in pool.hosts}
    for guest in pool.vms:
        if guest.running and guest.host in used:
            used[guest.host] += guest.memory
    batches: list[dict[str, Any]] = []
    for batch in plan.batches:
        peak = dict(batch.memory_peak)
        batches.append(
            {
                "index": batch.index,
                "estimate_seconds": batch.estimate_seconds,
                "steps": [
                    {
                        "host": host(step.host),
                        "version_before": step.version_before,
                        "version_after": plan.policy.target_version if step.upgrade else None,
                        "evacuate": [move(m) for m in step.evacuate],
                        "restore": [move(m) for m in step.restore],
                        "stop": [vm(v) for v in step.stop],
                        "start": [vm(v) for v in step.start],
                        "estimate_seconds": step.estimate_seconds,
                        "zone": step.zone,
                        **pending.step_json(step),
                    }
                    for step in batch.steps
                ],
                "memory": [
                    {
                        "host": host(h),
                        "capacity": capacity[h],
                        "before": used[h],
                        "after": after,
                        "peak": peak[h],
                    }
                    for h, after in batch.memory_after
                ],
            }
        )
        used.update(dict(batch.memory_after))

    steps = plan.steps
    out = [m for s in steps for m in s.evacuate]
    back = [m for s in steps for m in s.restore]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "rollup.plan",
        "feasible": plan.feasible,
        "pool": {
            "id": pool.id,
            "name": pool.name,
            "inventory_name": plan.inventory_name,
            "driver": pool.driver,
            "master": host(pool.master),
            "ha_enabled": pool.ha_enabled,
            "rolling_upgrade": pool.rolling_upgrade,
            "flavor": pool.flavor,
            "updates_hash": pool.updates_hash,
            "hosts": [
                {
                    "id": h.id,
                    "name": h.name,
                    "address": h.address,
                    "version": h.version,
                    "is_master": h.is_master,
                    "enabled": h.enabled,
                    "live": h.live,
                    "memory_total": h.memory_total,
                    "memory_overhead": h.memory_overhead,
                    "capacity": h.capacity,
                    "pending_updates": pending.pending_json(h.pending),
                }
                for h in pool.hosts
            ],
        },
        "policy": {
            "target_version": plan.policy.target_version,
            "strategy": plan.policy.strategy,
            "order": plan.policy.order,
            "max_parallel_hosts": plan.policy.max_parallel_hosts,
            "headroom": plan.policy.headroom,
            "parallel_migrations": plan.policy.parallel_migrations,
            "unmovable": plan.policy.unmovable,
            "ha": plan.policy.ha,
            "migration_bandwidth": plan.policy.migration_bandwidth,
            "patch_seconds": plan.policy.patch_seconds,
            "reboot_seconds": plan.policy.reboot_seconds,
            "update": plan.policy.update,
            "updates": plan.policy.updates,
            "reboot": plan.policy.reboot,
            "restart_vms": plan.policy.restart_vms,
            "installer_url": plan.policy.installer_url,
            "on_failure": plan.policy.on_failure,
            "retries": plan.policy.retries,
            "retry_delay_seconds": plan.policy.retry_delay_seconds,
            "max_failed_hosts": plan.policy.max_failed_hosts,
            "prestage": plan.policy.prestage,
            "download_seconds": plan.policy.download_seconds,
            "install_timeout_seconds": plan.policy.install_timeout_seconds,
        },
        "checks": [check(c) for c in plan.checks],
        "skipped": [{"host": host(s.host), "reason": s.reason} for s in plan.skipped],
        "batches": batches,
        "final_layout": [{"vm": vm(v), "host": host(h)} for v, h in plan.final_layout],
        "concurrency": {"hosts": plan.concurrency.hosts, "reason": plan.concurrency.reason},
        "prestage": {
            "method": plan.prestage.method,
            "reason": plan.prestage.reason,
            "seconds": prestage.phase_seconds(plan.prestage, plan.policy, len(plan.steps)),
        },
        "estimate": {
            "total_seconds": plan.estimate_seconds,
            "batches": [b.estimate_seconds for b in plan.batches],
        },
        "totals": {
            "hosts": len(pool.hosts),
            "hosts_upgraded": len(steps),
            "hosts_skipped": len(plan.skipped),
            "batches": len(plan.batches),
            "running_vms": len(plan.final_layout),
            "migrations": plan.migrations,
            "migrations_out": len(out),
            "migrations_back": len(back),
            "bytes_moved": plan.bytes_moved,
            "bytes_out": sum(m.memory for m in out),
            "bytes_back": sum(m.memory for m in back),
            "vms_stopped": sum(len(s.stop) for s in steps),
            "checks": {
                status: sum(1 for c in plan.checks if c.status == status)
                for status in ("pass", "warn", "fail")
            },
        },
    }
