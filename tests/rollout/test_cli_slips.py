"""Small things a new user trips on at the command line, each as that user meets it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.installed import ROLLUP
from tests.rollout.conftest import env
from tests.rollout.test_lab_resume import lab_inventory, rollup


def test_a_plan_piped_into_a_reader_that_leaves_ends_quietly(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yml"
    faults.write_text("{}\n")
    inventory = lab_inventory(tmp_path, faults)
    child = subprocess.Popen(
        [ROLLUP, "plan", str(inventory), "--format", "json", "--state-dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # as `| head` does once it has its lines
    err = child.stderr.read()
    assert child.wait(timeout=120) == 141, err
    assert "internal error" not in err and "BrokenPipe" not in err and "Traceback" not in err


def test_resume_with_nothing_to_resume_and_approves_help_speak_plainly(tmp_path: Path) -> None:
    nothing = rollup(tmp_path / "state", "resume")
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("rollup: there is no unfinished run in ")
    shown = subprocess.run(
        [ROLLUP, "approve", "--help"], capture_output=True, text=True, env=env(), timeout=60
    )
    assert "an approval gate: its start or its canary" in shown.stdout
