"""The Ansible collection an AWX job template uses: built, installed, and run by
`ansible-playbook` against lab pools, as an execution node would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fleet.test_fleet_run import lab_pool
from tests.installed import ROLLUP

COLLECTION = Path(__file__).resolve().parents[2] / "ansible_collections" / "hypervisor" / "rollup"
BIN = Path(sys.executable).parent  # ansible-galaxy and ansible-playbook of this venv

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    common: &common
      inventory: "{{ rollup_inventory }}"
      state_dir: "{{ rollup_state }}"
  tasks:
    - name: Plan
      hypervisor.rollup.rolling_update: {<<: *common, pool: lab}
      register: planned
    - name: Run, in check mode
      hypervisor.rollup.rolling_update: {<<: *common, pool: lab, mode: run}
      check_mode: true
      register: checked
    - name: Run
      hypervisor.rollup.rolling_update:
        <<: *common
        pool: lab
        mode: run
        policy: {max_parallel_hosts: auto}
      register: ran
    - name: A pool that cannot be evacuated
      hypervisor.rollup.rolling_update: {<<: *common, pool: full}
      register: refused
      ignore_errors: true
    - name: A pool that is not there
      hypervisor.rollup.rolling_update: {<<: *common, pool: nope}
      register: missing
      ignore_errors: true
    - name: What a job template would keep
      ansible.builtin.copy:
        dest: "{{ rollup_results }}"
        content: "{{ {'planned': planned, 'checked': checked, 'ran': ran,
                      'refused': refused, 'missing': missing} | to_json }}"
"""


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_playbook_plans_and_runs_a_pool_through_the_installed_collection(tmp_path: Path):
    env = dict(os.environ)
    env["PATH"] = f"{Path(ROLLUP).parent}:{BIN}:{env['PATH']}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "collections")
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    built = run("ansible-galaxy", "collection", "build", str(COLLECTION), env=env, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (tarball,) = tmp_path.glob("hypervisor-rollup-*.tar.gz")
    installed = run(
        "ansible-galaxy",
        "collection",
        "install",
        "-p",
        "collections",
        str(tarball),
        env=env,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    name = "hypervisor.rollup.rolling_update"
    doc = run("ansible-doc", "--json", name, env=env, cwd=tmp_path)
    assert doc.returncode == 0, doc.stderr
    documented = json.loads(doc.stdout)[name]
    assert documented["doc"]["short_description"].startswith("Plan or run a rolling update")
    assert {"inventory", "pool", "mode", "policy"} <= set(documented["doc"]["options"])
    assert {"summary", "plan", "run"} <= set(documented["return"])

    full = lab_pool(9, ["f1", "f2", "f3"], rollup_headroom="60%")
    pools = {"lab": lab_pool(8, ["l1", "l2", "l3"]), "full": full}
    inventory = tmp_path / "pools.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": pools}}))
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    results = tmp_path / "results.json"
    played = run(
        "ansible-playbook",
        "-i",
        "localhost,",
        "-c",
        "local",
        "site.yml",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"rollup_inventory={inventory}",
        "-e",
        f"rollup_state={tmp_path / 'state'}",
        "-e",
        f"rollup_results={results}",
        env=env,
        cwd=tmp_path,
    )
    assert played.returncode == 0, played.stdout[-3000:]
    got = json.loads(results.read_text())

    planned = got["planned"]
    assert planned["changed"] is False and planned["rc"] == 0
    assert planned["summary"]["feasible"] is True and planned["summary"]["pool"]
    assert planned["plan"]["kind"] == "rollup.plan"
    assert got["checked"]["changed"] is False and "run" not in got["checked"]

    ran = got["ran"]
    assert ran["rc"] == 0 and ran["changed"] is True
    assert ran["run"]["outcome"] == "completed"
    assert ran["run"]["hosts_done"] == planned["summary"]["hosts_upgraded"]
    assert ran["msg"].startswith("completed: ") and ran["run"]["run_id"] in ran["msg"]
    status = subprocess.run(
        [ROLLUP, "status", ran["run"]["run_id"], "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0 and "completed" in status.stdout

    refused = got["refused"]
    assert refused["failed"] is True and refused["rc"] == 3
    assert refused["msg"].startswith("the plan is refused: not enough memory elsewhere")
    missing = got["missing"]
    assert missing["failed"] is True and missing["rc"] == 2
    assert "no pool 'nope'" in missing["msg"] and "--pool" in missing["msg"]
