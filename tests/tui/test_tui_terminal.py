"""The real `rollup run` in a real terminal (tmux), and `status --watch` on a live run."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import yaml

from rollup.run.events import EventBus, HostStateChanged, RunFinished
from rollup.run.follow import JournalFollower
from rollup.run.journal import Journal
from rollup.tui.app import build_app
from tests.installed import ROLLUP
from tests.tui.scenario import small_plan

REPO = Path(__file__).resolve().parents[2]


def lab_inventory(tmp_path: Path) -> Path:
    """inventories/lab.yml at test speed."""
    data = yaml.safe_load((REPO / "inventories" / "lab.yml").read_text())
    group = data["all"]["children"]["lab"]["vars"]
    group["rollup_lab"]["speed"] = 200
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(data))
    return path


class Terminal:
    def __init__(self, name: str, width: int, height: int, command: str) -> None:
        self.name = name
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
             # pytest exports COLUMNS/LINES, which Textual would believe over tmux.
             f"env -u COLUMNS -u LINES {command}; echo EXIT=$?; sleep 600"],
            check=True,
        )  # fmt: skip

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def press(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


def test_a_new_user_follows_the_whole_upgrade_in_a_terminal(tmp_path: Path):
    assert shutil.which("tmux"), "tmux is needed: apt-get install -y tmux (.ci/run does)"
    inventory = lab_inventory(tmp_path)
    command = f"{ROLLUP} run {inventory} --state-dir {tmp_path / 'state'}"
    term = Terminal(f"rollup-{time.monotonic_ns()}", 120, 40, command)
    try:
        plan = term.wait_for("Upgrade this pool now?")
        assert "h1 (master)" in plan and "capacity" in plan
        term.press("Enter")
        term.wait_for("RUNNING")
        done = term.wait_for("COMPLETED", timeout=240)
        # The lab's h4 has every update already: it is left out, the others patched.
        for host in ("h1", "h2", "h3"):
            assert any(host in line and "done" in line for line in done.splitlines())
        assert any("h4" in line and "skipped" in line for line in done.splitlines()), done
        term.press("q")
        term.wait_for("EXIT=0")
    finally:
        term.close()


def test_detaching_with_q_stops_at_a_safe_point_and_leaves_the_run_resumable(tmp_path: Path):
    inventory = lab_inventory(tmp_path)
    state = tmp_path / "state"
    command = f"{ROLLUP} run {inventory} --state-dir {state}"
    term = Terminal(f"rollup-{time.monotonic_ns()}", 80, 24, command)
    try:
        term.wait_for("Upgrade this pool now?")
        term.press("Enter")
        term.wait_for("RUNNING")
        term.press("q")
        term.wait_for("EXIT=5", timeout=120)
    finally:
        term.close()
    record = Journal(state).runs(1)[0]
    assert record.outcome == "paused"
    assert "detached" in (record.message or "")


async def test_status_watch_shows_a_run_driven_by_another_process(tmp_path: Path):
    # The "other process" here is this test writing the journal as a controller would.
    plan = small_plan()
    journal = Journal(tmp_path)
    from rollup.codec import to_data

    journal.create_run("r-watch", "lab", plan.pool.id, "inv.yml", "ctl", to_data(plan))
    step = plan.steps[0]
    journal.record_event(
        HostStateChanged("r-watch", host=step.host, host_name=step.host_name,
                         state="evacuating", previous="disabling")
    )  # fmt: skip
    bus = EventBus()
    follower = JournalFollower(journal, journal.run("r-watch"), bus, poll_seconds=0.05)
    app = build_app(plan, follower, bus, run_id="r-watch")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        assert app.view.hosts[step.host].state == "evacuating"
        await pilot.press("p")  # a key becomes a command in the journal for the controller
        await pilot.pause(0.2)
        assert ("pause", None) in journal.take_commands("r-watch")
        journal.record_event(
            RunFinished("r-watch", outcome="completed", exit_code=0, message="ok",
                        hosts_done=1, hosts_failed=0, hosts_skipped=0, migrations=1, seconds=1)
        )  # fmt: skip
        await pilot.pause(0.5)
        assert app.view.state == "completed"
