"""rollup.remote.ansible: real ansible-playbook through ansible-runner against lab hosts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rollup.errors import BadInput
from rollup.lab.faults import HostFaults
from rollup.remote import ansible, processes
from rollup.remote.ansible import TaskEvent

LAB_PATCH = Path(__file__).parents[2] / "playbooks" / "lab-patch.yml"


def patch(machine, output_dir: Path, version: str = "8.3.0", events: list | None = None):
    return ansible.play(
        machine.remote_host(),
        LAB_PATCH,
        {"rollup_target_version": version},
        output_dir=output_dir,
        on_event=events.append if events is not None else None,
    )


def test_the_lab_patch_over_ssh_installs_the_version_and_asks_for_a_reboot(lab_host, tmp_path):
    events: list[TaskEvent] = []

    result = patch(lab_host, tmp_path / "out", events=events)

    assert (result.rc, result.status, result.ok, result.failed_task) == (
        0,
        "successful",
        True,
        None,
    )
    assert result.facts == {"rollup_reboot_required": True}
    assert lab_host.installed_version() == "8.3.0"
    assert lab_host.running_version() == "8.2.1"
    assert events == [
        TaskEvent("h1", "Update the packages to release 8.3.0", "changed"),
        TaskEvent("h1", "Decide whether a reboot is required", "ok"),
    ]
    log = (tmp_path / "out" / "h1.ansible.log").read_text()
    assert result.output_file == tmp_path / "out" / "h1.ansible.log"
    assert "changed: [h1]" in log and "PLAY RECAP" in result.output_tail
    assert list((tmp_path / "out").iterdir()) == [result.output_file]  # run dir is gone


def test_the_fail_patch_fault_fails_the_play_naming_the_task(lab_host, tmp_path):
    lab_host.set_faults(HostFaults(fail_patch=True))
    events: list[TaskEvent] = []

    result = patch(lab_host, tmp_path, events=events)

    assert (result.rc, result.status, result.ok) == (2, "failed", False)
    assert result.failed_task == "Update the packages to release 8.3.0"
    assert result.message == (
        "non-zero return code: patch failed on h1: lab fault fail-patch is set "
        f"({lab_host.root}/etc/rollup-lab/fail-patch exists)"
    )
    assert [e.status for e in events] == ["failed"]
    assert "fail-patch" in result.output_tail
    assert result.facts == {}
    assert lab_host.installed_version() is None


def test_a_host_that_refuses_ssh_is_reported_unreachable_not_raised(lab_host, tmp_path):
    lab_host.set_faults(HostFaults(refuse_ssh=True))
    events: list[TaskEvent] = []

    result = patch(lab_host, tmp_path, events=events)

    assert (result.rc, result.unreachable, result.ok) == (4, True, False)
    assert result.failed_task == "Update the packages to release 8.3.0"
    assert [e.status for e in events] == ["unreachable"]
    assert "Connection refused" in result.message


def test_the_lab_patch_over_the_local_connection_sees_the_hosts_environment(
    make_lab_host, tmp_path
):
    machine = make_lab_host("h4", ssh=False, version="8.3.0")

    result = patch(machine, tmp_path, version="8.3.0")

    assert result.ok
    assert result.facts == {"rollup_reboot_required": False}
    assert machine.installed_version() == "8.3.0"


def test_a_target_version_with_shell_characters_is_written_literally(make_lab_host, tmp_path):
    machine = make_lab_host("h5", ssh=False)
    version = "8.3.0 $(touch pwned) 'x'"

    result = patch(machine, tmp_path, version=version)

    assert result.ok
    assert machine.installed_version() == version
    assert not list(tmp_path.rglob("pwned"))


def test_cancel_stops_a_running_play(make_lab_host, tmp_path):
    machine = make_lab_host("h6", ssh=False)
    playbook = tmp_path / "slow.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: quick\n      ansible.builtin.command: 'true'\n"
        "    - name: slow\n      ansible.builtin.command: sleep 59.125\n"
    )
    cancel = threading.Event()
    events: list[TaskEvent] = []

    def cancel_after_the_quick_task(event: TaskEvent) -> None:
        events.append(event)
        cancel.set()

    result = ansible.play(
        machine.remote_host(),
        playbook,
        output_dir=tmp_path / "out",
        on_event=cancel_after_the_quick_task,
        cancel=cancel,
    )

    assert result.status == "canceled"
    assert not result.ok
    # Cut short in the slow task: the quick one finished, the slow one never did.
    assert [(e.task, e.status) for e in events] == [("quick", "changed")]
    assert not processes.with_cmdline("sleep 59.125")  # ansible's workers are gone too


def test_a_play_past_its_timeout_is_stopped_with_status_timeout(make_lab_host, tmp_path):
    machine = make_lab_host("h7", ssh=False)
    playbook = tmp_path / "slow.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: slow\n      ansible.builtin.command: sleep 58.125\n"
    )

    result = ansible.play(machine.remote_host(), playbook, output_dir=tmp_path, timeout=2)

    assert (result.status, result.ok) == ("timeout", False)
    assert not processes.with_cmdline("sleep 58.125")


def test_a_missing_playbook_is_bad_input(lab_host, tmp_path):
    with pytest.raises(BadInput, match=r"^playbook not found: .*nope\.yml$"):
        ansible.play(lab_host.remote_host(), tmp_path / "nope.yml", output_dir=tmp_path)


def test_the_inventory_holds_only_the_one_host_with_its_own_vars(lab_host):
    host = lab_host.remote_host()

    assert ansible.inventory(host) == {"all": {"hosts": {"h1": lab_host.inventory_vars()}}}
    assert ansible.environment(host, Path("/x"))["ANSIBLE_HOST_KEY_CHECKING"] == "False"
