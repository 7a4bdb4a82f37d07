"""An in-process lab keeps its pool across processes: saved on stop and while it runs,
restored by `start_for(..., restore=True)`, fresh otherwise (lab/persistence.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
import yaml

from rollup.lab import LabSpec
from rollup.lab.machine import INSTALLED_VERSION
from rollup.lab.xapi.persistence import STATE_FILE
from rollup.lab.xapi.running import RunningLab
from tests.lab.conftest import wait_until

# No sshd: these tests are about the pool's state, and the hosts' disks are the same.
SPEC = LabSpec(hosts=4, vms=24, seed=1, speed=1000.0, ssh=False, release="8.2.1")


@pytest.fixture
def labs() -> Iterator[list[RunningLab]]:
    """Labs to stop at the end, whatever the test did."""
    started: list[RunningLab] = []
    yield started
    for lab in started:
        lab.stop()


def start(
    labs: list[RunningLab], directory: Path, spec: LabSpec = SPEC, restore: bool = False
) -> RunningLab:
    lab = RunningLab.start_for(spec, directory, restore=restore)
    labs.append(lab)
    return lab


def stop(labs: list[RunningLab], lab: RunningLab) -> None:
    labs.remove(lab)
    lab.stop()


def failure_of(call: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call()
    return list(info.value.details)


def login(lab: RunningLab) -> Any:
    session = XenAPI.Session(lab.url)
    session.xenapi.login_with_password(lab.user, lab.password, "2.21", "rollup-tests")
    return session.xenapi


def view(lab: RunningLab) -> dict[str, Any]:
    """What a XenAPI client sees of the pool's durable state."""
    x = login(lab)
    hosts = x.host.get_all_records()
    names = {ref: record["name_label"] for ref, record in hosts.items()}
    pool = next(iter(x.pool.get_all_records().values()))
    return {
        "pool": {
            "master": names[pool["master"]],
            "other_config": pool["other_config"],
            "ha_enabled": pool["ha_enabled"],
        },
        "hosts": {
            record["name_label"]: {
                "version": record["software_version"]["product_version"],
                "platform_version": record["software_version"]["platform_version"],
                "enabled": record["enabled"],
                "live": x.host_metrics.get_live(record["metrics"]),
                "other_config": record["other_config"],
                "memory_free": x.host_metrics.get_memory_free(record["metrics"]),
            }
            for record in hosts.values()
        },
        "vms": {
            record["name_label"]: (record["power_state"], names.get(record["resident_on"]))
            for record in x.VM.get_all_records().values()
            if not record["is_control_domain"]
        },
    }


def host_ref(x: Any, name: str) -> str:
    return x.host.get_by_name_label(name)[0]


def running_on(x: Any, name: str, movable: bool) -> list[str]:
    refs = x.host.get_resident_VMs(host_ref(x, name))
    return [
        ref
        for ref in refs
        if not x.VM.get_is_control_domain(ref)
        and ("pool_migrate" in x.VM.get_allowed_operations(ref)) == movable
    ]


def migrate_one(x: Any, source: str, dest: str, run_async: bool = False) -> str:
    """A movable VM of `source` that fits on `dest`, migrated there; its name."""
    free = int(x.host_metrics.get_memory_free(x.host.get_metrics(host_ref(x, dest))))
    for ref in running_on(x, source, movable=True):
        need = int(x.VM.get_memory_static_max(ref)) + int(x.VM.get_memory_overhead(ref))
        if need <= free:
            call = x.Async.VM.pool_migrate if run_async else x.VM.pool_migrate
            call(ref, host_ref(x, dest), {"live": "true"})
            return x.VM.get_name_label(ref)
    raise AssertionError(f"no VM of {source} fits on {dest}")


def install(lab: RunningLab, name: str, version: str) -> None:
    """What the lab patch does: the host's disk now holds `version` for its next boot."""
    path = lab.machines[name].root / INSTALLED_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(version + "\n")


def test_a_restored_lab_is_the_pool_its_predecessor_left(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    lab = start(labs, directory)
    assert not lab.restored
    x = login(lab)
    booted_before = float(x.host.get_other_config(host_ref(x, "h2"))["boot_time"])

    # HA first: xapi refuses it once the pool's versions differ (rolling-upgrade mode).
    x.pool.enable_ha([], {})
    x.host.disable(host_ref(x, "h3"))
    moved = migrate_one(x, "h4", "h1")
    # h2: a patch installed 8.3.0; its VMs stop (no room asked for), it reboots into 8.3.0.
    install(lab, "h2", "8.3.0")
    x.host.disable(host_ref(x, "h2"))
    for ref in x.host.get_resident_VMs(host_ref(x, "h2")):
        if not x.VM.get_is_control_domain(ref):
            x.VM.clean_shutdown(ref)
    x.host.reboot(host_ref(x, "h2"))
    wait_until(
        lambda: (
            login(lab).host.get_software_version(host_ref(x, "h2"))["product_version"] == "8.3.0"
            and login(lab).host.get_enabled(host_ref(x, "h2"))
        ),
        timeout=30,
    )
    x = login(lab)  # the master kept its sessions, but be independent of it
    x.pool.add_to_other_config(x.pool.get_all()[0], "rollup.lock", "controller-1 run 42")
    # xapi's db_gc notices the mixed versions within 30 s (db_gc.ml), not at once.
    pool_ref = x.pool.get_all()[0]
    wait_until(lambda: "rolling_upgrade_in_progress" in x.pool.get_other_config(pool_ref))
    assert failure_of(lambda: x.pool.enable_ha([], {})) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    before = view(lab)
    assert before["hosts"]["h2"]["version"] == "8.3.0"
    assert float(before["hosts"]["h2"]["other_config"]["boot_time"]) > booted_before
    assert before["hosts"]["h3"]["enabled"] is False
    assert before["vms"][moved] == ("Running", "h1")
    assert before["pool"]["other_config"]["rolling_upgrade_in_progress"] == "true"
    stop(labs, lab)

    state_file = directory / STATE_FILE
    assert state_file.stat().st_mode & 0o777 == 0o600
    saved = json.loads(state_file.read_text())
    assert saved["spec"] == {
        "hosts": 4,
        "vms": 24,
        "seed": 1,
        "fill": [0.5, 0.75],
        "flavor": "xcp-ng",
        "release": "8.2.1",
    }

    boot_ids = {name: machine.boot_id() for name, machine in lab.machines.items()}
    again = start(labs, directory, restore=True)
    assert again.restored
    assert view(again) == before
    # Not a reboot: each host keeps its boot.
    assert {name: m.boot_id() for name, m in again.machines.items()} == boot_ids
    # Its disk was kept and it runs what it booted.
    assert again.machines["h2"].installed_version() == "8.3.0"
    assert again.machines["h2"].running_version() == "8.3.0"
    assert again.machines["h1"].running_version() == "8.2.1"
    # The lab clock goes on from the saved one: a reboot now is newer than every boot.
    assert again.pool.now() >= saved["clock"]
    stop(labs, again)

    fresh = start(labs, directory)
    assert not fresh.restored
    state = view(fresh)
    assert {h["version"] for h in state["hosts"].values()} == {"8.2.1"}
    assert all(h["enabled"] for h in state["hosts"].values())
    assert state["pool"]["other_config"] == {"auto_poweron": "true"}  # as a fresh lab starts
    assert state["pool"]["ha_enabled"] is False
    assert fresh.machines["h2"].installed_version() is None  # a fresh lab's disks are new


def test_a_fresh_lab_that_changes_nothing_leaves_the_saved_state_alone(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    lab = start(labs, directory)
    x = login(lab)
    x.host.disable(host_ref(x, "h4"))
    stop(labs, lab)
    saved = (directory / STATE_FILE).read_text()

    # `rollup plan` on the lab inventory: a fresh lab, looked at, stopped.
    looked = start(labs, directory)
    view(looked)
    stop(labs, looked)
    assert (directory / STATE_FILE).read_text() == saved

    # A new run changes its fresh lab: that lab's state replaces the old one.
    changed = start(labs, directory)
    y = login(changed)
    y.pool.add_to_other_config(y.pool.get_all()[0], "rollup.lock", "run 2")
    stop(labs, changed)
    restored = start(labs, directory, restore=True)
    state = view(restored)
    assert state["pool"]["other_config"] == {"rollup.lock": "run 2", "auto_poweron": "true"}
    assert state["hosts"]["h4"]["enabled"] is True


def test_operations_in_flight_are_saved_settled(tmp_path: Path, labs):
    """Stopped mid-migration and mid-reboot: the VM lands, the host is back upgraded."""
    directory = tmp_path / "lab"
    # Real time: a migration takes seconds, a rebooting host goes down 10 s after the call.
    slow = LabSpec(hosts=4, vms=24, seed=1, speed=1.0, ssh=False, release="8.2.1")
    lab = start(labs, directory, slow)
    x = login(lab)
    h3 = host_ref(x, "h3")
    booted_before = float(x.host.get_other_config(h3)["boot_time"])
    on_h3 = [x.VM.get_name_label(ref) for ref in running_on(x, "h3", True)]
    on_h3 += [x.VM.get_name_label(ref) for ref in running_on(x, "h3", False)]
    moving = migrate_one(x, "h4", "h1", run_async=True)
    install(lab, "h3", "8.3.0")
    x.host.disable(h3)
    x.host.reboot(h3)
    wait_until(lambda: x.VM.get_current_operations(x.VM.get_by_name_label(moving)[0]))
    assert x.VM.get_resident_on(x.VM.get_by_name_label(moving)[0]) == host_ref(x, "h4")
    stop(labs, lab)

    again = start(labs, directory, slow, restore=True)
    state = view(again)
    assert state["vms"][moving] == ("Running", "h1")
    h3_state = state["hosts"]["h3"]
    assert (h3_state["version"], h3_state["enabled"], h3_state["live"]) == ("8.3.0", True, True)
    assert float(h3_state["other_config"]["boot_time"]) > booted_before
    assert float(h3_state["other_config"]["boot_time"]) <= again.pool.now()
    # What still ran on h3 was halted by its power-off, as a real reboot would.
    assert on_h3 and all(state["vms"][name] == ("Halted", None) for name in on_h3)
    assert state["pool"]["other_config"]["rolling_upgrade_in_progress"] == "true"
    assert again.machines["h3"].running_version() == "8.3.0"


def test_a_host_held_down_stays_down_until_its_fault_is_cleared(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    faults = tmp_path / "faults.yml"
    faults.write_text(yaml.safe_dump({"hosts": {"h2": {"no_return": True}}}))
    spec = LabSpec(
        hosts=4, vms=24, seed=1, speed=1000.0, ssh=False, faults=str(faults), release="8.2.1"
    )
    lab = start(labs, directory, spec)
    x = login(lab)
    h2 = host_ref(x, "h2")
    install(lab, "h2", "8.3.0")
    x.host.disable(h2)
    x.host.reboot(h2)
    wait_until(lambda: not x.host_metrics.get_live(x.host.get_metrics(h2)))
    stop(labs, lab)

    held = start(labs, directory, spec, restore=True)
    state = view(held)
    assert (state["hosts"]["h2"]["live"], state["hosts"]["h2"]["enabled"]) == (False, False)
    assert held.machines["h2"].running_version() == "8.2.1"  # written by its last boot
    stop(labs, held)

    faults.write_text("{}\n")
    released = start(labs, directory, spec, restore=True)
    y = login(released)
    wait_until(lambda: y.host.get_enabled(host_ref(y, "h2")), timeout=10)
    assert y.host.get_software_version(host_ref(y, "h2"))["product_version"] == "8.3.0"


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rollup.lab.xapi.running import RunningLab
    from rollup.lab import LabSpec

    spec = LabSpec(hosts=4, vms=24, seed=1, speed=1000.0, ssh=sys.argv[2] == "ssh", release="8.2.1")
    lab = RunningLab.start_for(spec, Path(sys.argv[1]))
    print(lab.url, lab.password, flush=True)
    time.sleep(600)
    """
)


def test_a_lab_killed_with_sigkill_leaves_a_recent_state(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    child = subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD, str(directory), "no-ssh"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        url, password = child.stdout.readline().split()
        session = XenAPI.Session(url)
        session.xenapi.login_with_password("root", password, "2.21", "rollup-tests")
        x = session.xenapi
        state_file = directory / STATE_FILE

        def saved() -> dict:
            try:
                return json.loads(state_file.read_text())
            except FileNotFoundError:
                return {}

        # Two changes, each seen in the file while the lab still runs: it is saved as
        # the pool changes, again and again, not once and not only on stop.
        x.host.disable(host_ref(x, "h2"))
        wait_until(lambda: saved().get("hosts", {}).get("h2", {}).get("enabled") is False)
        assert child.poll() is None
        assert "rollup.lock" not in saved()["pool"]["other_config"]
        x.pool.add_to_other_config(x.pool.get_all()[0], "rollup.lock", "killed controller")
        wait_until(lambda: "rollup.lock" in saved()["pool"]["other_config"])
        assert child.poll() is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    again = start(labs, directory, restore=True)
    state = view(again)
    assert state["hosts"]["h2"]["enabled"] is False
    assert state["pool"]["other_config"]["rollup.lock"] == "killed controller"


def test_a_state_for_another_lab_or_unreadable_gives_a_fresh_lab(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    lab = start(labs, directory)
    x = login(lab)
    x.host.disable(host_ref(x, "h1"))
    install(lab, "h1", "8.3.0")
    stop(labs, lab)

    other = LabSpec(hosts=4, vms=24, seed=2, speed=1000.0, ssh=False)
    mismatched = start(labs, directory, other, restore=True)
    assert not mismatched.restored
    assert all(h["enabled"] for h in view(mismatched)["hosts"].values())
    assert mismatched.machines["h1"].installed_version() is None
    stop(labs, mismatched)

    (directory / STATE_FILE).write_text("{ not json")
    unreadable = start(labs, directory, restore=True)
    assert not unreadable.restored
    assert all(h["enabled"] for h in view(unreadable)["hosts"].values())


def test_the_sshd_daemons_of_a_killed_lab_are_stopped_by_the_next_one(tmp_path: Path, labs):
    directory = tmp_path / "lab"
    child = subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD, str(directory), "ssh"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    pids = [int((d / "sshd.pid").read_text()) for d in sorted((directory / "hosts").iterdir())]
    assert len(pids) == 4
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)  # left behind by SIGKILL

    start(labs, directory, SPEC)  # fresh, without ssh: nothing of the old lab may survive
    wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
