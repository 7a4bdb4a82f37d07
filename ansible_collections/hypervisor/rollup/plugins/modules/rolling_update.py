#!/usr/bin/python
"""hypervisor.rollup.rolling_update: plan or run rollup on one pool, return its summary."""

from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: rolling_update
short_description: Plan or run a rolling update of one hypervisor pool with rollup
description:
  - Runs C(rollup plan) or C(rollup run) on the node that runs the task, for one pool
    of a rollup inventory, and returns the plan or the run's summary.
  - A run disables each host in turn, evacuates its VMs by live migration, patches it,
    reboots it if needed, verifies it, enables it and brings its VMs back; see rollup's
    README. The pool's own lock stops a second run anywhere.
  - In check mode a C(run) only plans, and changes nothing.
  - rollup must be installed on that node (the AWX execution environment's image, or a
    host you delegate to).
version_added: "0.1.0"
author: rollup developers
options:
  inventory:
    description: The rollup inventory (an Ansible inventory file or directory) on that node.
    type: path
    required: true
  pool:
    description: The pool's inventory group; needed when the inventory holds several.
    type: str
  mode:
    description:
      - C(plan) computes the plan and changes nothing; C(run) runs it (without asking).
    type: str
    choices: [plan, run]
    default: plan
  policy:
    description:
      - rollup policy flags, by name without dashes, e.g. C(max_parallel_hosts=auto),
        C(headroom=10%), C(canary=1), C(on_failure=abort), C(window=22:00-05:00).
        They override the inventory's C(rollup_*) variables.
    type: dict
    default: {}
  state_dir:
    description: Where rollup keeps its journal (default C(~/.local/state/rollup)).
    type: path
  vault_password_file:
    description: For a vaulted C(rollup_api_password).
    type: path
  break_lock:
    description: Take over a stale run lock (only when its controller is gone).
    type: bool
    default: false
  executable:
    description: The rollup command (default C(rollup) on the PATH).
    type: path
notes:
  - The task fails when rollup exits non-zero, with rollup's own one-line reason in
    C(msg); C(rc) is rollup's exit code (2 bad input, 3 refused by checks or another
    run's lock, 1 a host failed, 4 aborted, 5 paused and resumable with C(rollup resume)).
"""

EXAMPLES = r"""
- name: Plan the patch of pool xcp_prod (a change ticket can take summary and checks)
  hypervisor.rollup.rolling_update:
    inventory: inventories/xcp-prod.yml
    pool: xcp_prod
  register: planned

- name: Patch it, as many hosts at once as every VM still fits with 10 % headroom
  hypervisor.rollup.rolling_update:
    inventory: inventories/xcp-prod.yml
    pool: xcp_prod
    mode: run
    policy:
      max_parallel_hosts: auto
      headroom: "10%"
  register: ran
"""

RETURN = r"""
rc:
  description: rollup's exit code.
  returned: always
  type: int
summary:
  description: The plan in a few numbers.
  returned: when a plan was made
  type: dict
  contains:
    feasible: {description: Whether every check passes, type: bool}
    pool: {description: The pool's name, type: str}
    hosts_upgraded: {description: Hosts the plan patches or upgrades, type: int}
    hosts_skipped: {description: Hosts left alone (nothing pending...), type: int}
    batches: {description: Batches of hosts taken down together, type: int}
    migrations: {description: Live migrations planned, type: int}
    estimate_seconds: {description: The plan's estimate of the window, type: float}
    concurrency: {description: How many hosts at once, and why, type: str}
    failing_checks: {description: The reasons of the checks that fail, type: list}
plan:
  description:
    - The whole plan, as C(rollup plan --format json) writes it (its JSON Schema is
      rollup/schemas/plan.schema.json).
  returned: when a plan was made
  type: dict
run:
  description: How the run ended (its C(run-finished) event).
  returned: mode=run, outside check mode, when the run started
  type: dict
  contains:
    run_id: {description: For rollup status, report and resume, type: str}
    outcome: {description: completed, failed, aborted or paused, type: str}
    message: {description: The run's last word, type: str}
    hosts_done: {description: Hosts patched, type: int}
    hosts_failed: {description: Hosts that failed, type: int}
    hosts_skipped: {description: Hosts skipped, type: int}
    migrations: {description: Live migrations done, type: int}
    seconds: {description: How long it took, type: float}
"""

RUN_FIELDS = (
    "run_id",
    "outcome",
    "message",
    "hosts_done",
    "hosts_failed",
    "hosts_skipped",
    "migrations",
    "seconds",
)


def command(module: AnsibleModule, rollup: str, verb: str) -> list[str]:
    params = module.params
    args = [rollup, verb, params["inventory"]]
    if params["pool"]:
        args += ["--pool", params["pool"]]
    if params["state_dir"]:
        args += ["--state-dir", params["state_dir"]]
    if params["vault_password_file"]:
        args += ["--vault-password-file", params["vault_password_file"]]
    for name, value in sorted((params["policy"] or {}).items()):
        args += ["--" + str(name).replace("_", "-"), str(value)]
    if verb == "plan":
        args += ["--format", "json"]
    else:
        args += ["--yes", "--no-tui", "--json"]
        if params["break_lock"]:
            args.append("--break-lock")
    return args


def summary(plan: dict[str, Any]) -> dict[str, Any]:
    totals = plan["totals"]
    return {
        "feasible": plan["feasible"],
        "pool": plan["pool"]["name"],
        "hosts_upgraded": totals["hosts_upgraded"],
        "hosts_skipped": totals["hosts_skipped"],
        "batches": totals["batches"],
        "migrations": totals["migrations"],
        "estimate_seconds": plan["estimate"]["total_seconds"],
        "concurrency": plan.get("concurrency", {}).get("reason", ""),
        "failing_checks": [c["reason"] for c in plan["checks"] if c["status"] == "fail"],
    }


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "inventory": {"type": "path", "required": True},
            "pool": {"type": "str"},
            "mode": {"type": "str", "choices": ["plan", "run"], "default": "plan"},
            "policy": {"type": "dict", "default": {}},
            "state_dir": {"type": "path"},
            "vault_password_file": {"type": "path", "no_log": False},
            "break_lock": {"type": "bool", "default": False},
            "executable": {"type": "path"},
        },
        supports_check_mode=True,
    )
    rollup = module.params["executable"] or module.get_bin_path("rollup", required=True)
    plan_only = module.params["mode"] == "plan" or module.check_mode
    rc, out, err = module.run_command(command(module, rollup, "plan" if plan_only else "run"))
    if plan_only:
        try:
            plan = json.loads(out)
        except ValueError:
            module.fail_json(msg=last_line(err) or "rollup plan wrote no plan", rc=rc)
        result = {"rc": rc, "changed": False, "plan": plan, "summary": summary(plan)}
        if rc != 0:
            reasons = "; ".join(result["summary"]["failing_checks"])
            module.fail_json(msg=f"the plan is refused: {reasons}", **result)
        module.exit_json(msg=f"the plan is feasible ({len(plan['batches'])} batches)", **result)
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    finished = [e for e in events if e.get("kind") == "run-finished"]
    if not finished:
        module.fail_json(msg=last_line(err) or f"rollup run exited {rc}", rc=rc, changed=False)
    run = {name: finished[-1].get(name) for name in RUN_FIELDS}
    result = {"rc": rc, "changed": bool(run["hosts_done"]), "run": run}
    message = f"{run['outcome']}: {run['message']} (run {run['run_id']})"
    if rc != 0:
        module.fail_json(msg=message, **result)
    module.exit_json(msg=message, **result)


if __name__ == "__main__":
    main()
