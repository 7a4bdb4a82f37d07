"""A lab never outlives its owner: closed terminals, SIGKILL, `rollup lab down`, taken addresses.

Every lab here runs as a user runs it, through the installed `rollup`, with real sshd
daemons on 127.S.62-67 (tests/loopback.py). "Nothing left" is read from /proc: no
process carries the lab's mark or names its directory (rollup/lab/reaper.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from rollup.lab import reaper
from rollup.lab.xapi.running import RunningLab
from rollup.remote import processes
from tests import loopback
from tests.installed import ROLLUP
from tests.rollout.conftest import env

REPO = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux")
HOSTS = 2


def until(condition: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f}s: {condition}")
        time.sleep(0.05)


def left(directory: Path) -> list[str]:
    """What still runs of the lab in `directory`, as command lines (empty: nothing)."""
    return sorted(processes.cmdline(pid) for pid in reaper.find(directory))


def sshd_count(directory: Path) -> int:
    return len(processes.with_cmdline(f"-f {directory.resolve()}/hosts/"))


def lab_up(directory: Path, network: str) -> list[str]:
    return [ROLLUP, "lab", "up", "--ssh", "--hosts", str(HOSTS), "--vms", "4",
            "--dir", str(directory), "--network", network, "--speed", "200"]  # fmt: skip


def start(directory: Path, network: str) -> subprocess.Popen[str]:
    owner = subprocess.Popen(
        lab_up(directory, network),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert owner.stdout is not None
    banner = owner.stdout.readline()
    assert banner.startswith("lab pool"), banner + (owner.stderr.read() if owner.stderr else "")
    until(lambda: sshd_count(directory) == HOSTS)
    return owner


def down(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLUP, "lab", "down", "--dir", str(directory)],
        capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "lab"
    yield directory
    reaper.sweep(directory)  # whatever a failed test left must not hold the addresses


def test_a_lab_whose_terminal_closes_stops_everything_and_its_addresses_are_free(lab_dir: Path):
    assert TMUX, "tmux is needed: apt-get install -y tmux (.ci/run does)"
    network = loopback.network(62)
    session = f"rollup-lab-{os.getpid()}"
    command = " ".join(lab_up(lab_dir, network))
    subprocess.run([TMUX, "new-session", "-d", "-s", session, command], check=True, env=env())
    try:
        until(lambda: sshd_count(lab_dir) == HOSTS)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], check=False)  # SIGHUP
    until(lambda: not left(lab_dir), seconds=15)

    again = start(lab_dir, network)  # the same addresses bind again
    done = down(lab_dir)
    assert done.returncode == 0, done.stderr
    assert f"lab in {lab_dir} stopped" in done.stderr
    assert again.wait(30) == 0
    assert left(lab_dir) == []
    assert not (lab_dir / reaper.PID_FILE).exists()


def test_a_lab_owner_killed_with_sigkill_leaves_nothing_and_its_addresses_free(lab_dir: Path):
    network = loopback.network(63)
    owner = start(lab_dir, network)
    owner.kill()
    owner.wait()
    until(lambda: not left(lab_dir), seconds=15)

    again = start(lab_dir, network)
    again.send_signal(signal.SIGTERM)
    assert again.wait(30) == 0
    assert left(lab_dir) == []


def test_lab_down_stops_what_a_lab_left_when_its_reaper_died_too(lab_dir: Path):
    owner = start(lab_dir, loopback.network(64))
    (watcher,) = processes.with_cmdline(f"rollup.lab.reaper {lab_dir.resolve()}")
    os.kill(watcher, signal.SIGKILL)  # a power cut of the controller, say
    owner.kill()
    owner.wait()
    time.sleep(0.5)
    assert sshd_count(lab_dir) == HOSTS, "without its reaper the daemons would live on"

    done = down(lab_dir)
    assert done.returncode == 0, done.stderr
    assert "a dead lab left in" in done.stderr
    assert left(lab_dir) == []
    nothing = down(lab_dir)
    assert (nothing.returncode, nothing.stderr.strip()) == (0, f"no lab was running in {lab_dir}")


def test_lab_down_stops_a_dead_labs_daemons_even_after_its_directory_was_deleted(lab_dir: Path):
    owner = start(lab_dir, loopback.network(67))
    (watcher,) = processes.with_cmdline(f"rollup.lab.reaper {lab_dir.resolve()}")
    os.kill(watcher, signal.SIGKILL)
    owner.kill()
    owner.wait()
    shutil.rmtree(lab_dir)  # pytest's or the user's clean-up of old temporary directories
    done = down(lab_dir)
    assert done.returncode == 0, done.stderr
    assert f"a dead lab left in {lab_dir.resolve()}" in done.stderr
    assert left(lab_dir) == []


def test_lab_down_of_a_directory_that_holds_no_lab_is_bad_input(tmp_path: Path):
    done = down(tmp_path / "nowhere")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is not a lab directory" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's lab hosts share port 22")
def test_taken_addresses_name_the_process_and_the_command_that_frees_them(tmp_path: Path):
    first = tmp_path / "first"
    network = loopback.network(65)
    owner = start(first, network)
    try:
        second = subprocess.run(
            lab_up(tmp_path / "second", network), capture_output=True, text=True, env=env(),
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"`rollup lab down --dir {first.resolve()}`" in second.stderr
        assert left(tmp_path / "second") == []
    finally:
        owner.terminate()
        owner.wait(30)

    other = loopback.address(66, 2)
    with socket.create_server((other, 22)) as squatter:
        assert squatter is not None
        taken = subprocess.run(
            lab_up(tmp_path / "third", loopback.network(66)), capture_output=True, text=True,
            env=env(), timeout=60,
        )  # fmt: skip
    assert taken.returncode == 2
    assert taken.stderr.count("\n") == 1, taken.stderr
    assert f"{other}:22 is taken by pid {os.getpid()}" in taken.stderr
    assert f"`kill {os.getpid()}`" in taken.stderr
    assert left(tmp_path / "third") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's lab hosts share port 22")
def test_a_lab_that_picks_its_network_passes_over_one_with_an_address_taken(tmp_path: Path):
    probe = RunningLab.start(hosts=3, vms=3, seed=1, speed=200, ssh=True, port=0,
                             directory=tmp_path / "probe")  # fmt: skip
    chosen = {machine.address for machine in probe.machines.values()}
    probe.stop()
    (third_host,) = [a for a in chosen if a and a.endswith(".3")]
    with socket.create_server((third_host, 22)):
        lab = RunningLab.start(hosts=3, vms=3, seed=1, speed=200, ssh=True, port=0,
                               directory=tmp_path / "lab")  # fmt: skip
        try:
            addresses = {machine.address for machine in lab.machines.values()}
            assert addresses.isdisjoint(chosen)
        finally:
            lab.stop()


def test_a_run_whose_terminal_closes_leaves_no_lab_behind(tmp_path: Path):
    """The issue as it was met: the TUI's terminal closed, then the next plan failed."""
    assert TMUX, "tmux is needed: apt-get install -y tmux (.ci/run does)"
    data = yaml.safe_load((REPO / "inventories" / "lab.yml").read_text())
    data["all"]["children"]["lab"]["vars"]["rollup_lab"]["speed"] = 200
    inventory = tmp_path / "lab.yml"
    inventory.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    session = f"rollup-run-{os.getpid()}"
    command = f"{ROLLUP} run {inventory} --state-dir {state}"
    subprocess.run(
        [TMUX, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
        check=True, env=env(),
    )  # fmt: skip
    try:
        until(lambda: len(processes.with_cmdline(f"-f {state}")) == 4)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], check=False)
    until(lambda: not processes.with_cmdline(f"-f {state}"), seconds=15)
    plan = subprocess.run(
        [ROLLUP, "plan", str(inventory), "--state-dir", str(state)],
        capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert not processes.with_cmdline(f"-f {state}")
