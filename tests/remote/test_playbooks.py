"""The shipped playbooks: valid for ansible-playbook, and the XCP-ng update's logic.

The XCP-ng update cannot meet a real yum here, so it runs over SSH against a lab host
whose PATH starts with stand-ins for yum, needs-restarting and rpm that answer the way
XCP-ng's do and record how they were called.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollup import bundled
from rollup.remote import ansible
from rollup.remote.ansible import TaskEvent

# The playbooks as installed, where rollup runs them from.
PLAYBOOKS = Path(bundled.playbook("xcp-ng-update.yml")).parent

YUM = """#!/bin/sh
echo "$*" >> "$ROLLUP_LAB_ROOT/yum.log"
case "$*" in
  *update*) if [ -e "$ROLLUP_LAB_ROOT/no-updates" ]; then echo "No packages marked for update";
            else echo "Updated: kernel"; fi ;;
esac
"""
NEEDS_RESTARTING = """#!/bin/sh
exit "$(cat "$ROLLUP_LAB_ROOT/needs-restarting-rc")"
"""
# `rpm -q --qf '%{INSTALLTIME}\\n' PKG`: the install time, or "not installed" and rc 1.
RPM = """#!/bin/sh
for pkg; do :; done
if [ -e "$ROLLUP_LAB_ROOT/installed/$pkg" ]; then cat "$ROLLUP_LAB_ROOT/installed/$pkg"
else echo "package $pkg is not installed"; exit 1; fi
"""


@pytest.mark.parametrize("playbook", ["xcp-ng-update.yml", "lab-patch.yml"])
def test_the_playbook_passes_ansible_playbooks_syntax_check(playbook):
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    done = subprocess.run(
        [ansible_playbook, "--syntax-check", "-i", "localhost,", PLAYBOOKS / playbook],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def xcp_host(lab_host):
    for name, script in {"yum": YUM, "needs-restarting": NEEDS_RESTARTING, "rpm": RPM}.items():
        shim = lab_host.bin / name
        shim.write_text(script)
        shim.chmod(0o755)
    (lab_host.root / "installed").mkdir()
    return lab_host


def boot_time() -> int:
    stat = Path("/proc/stat").read_text()
    return int(next(line.split()[1] for line in stat.splitlines() if line.startswith("btime")))


def update(machine, output_dir: Path, events: list, **extra_vars):
    return ansible.play(
        machine.remote_host(),
        PLAYBOOKS / "xcp-ng-update.yml",
        extra_vars,
        output_dir=output_dir,
        on_event=events.append,
    )


def test_a_new_kernel_and_needs_restarting_both_ask_for_a_reboot(xcp_host, tmp_path):
    (xcp_host.root / "needs-restarting-rc").write_text("1\n")
    (xcp_host.root / "installed/kernel").write_text(f"{boot_time() - 50}\n{boot_time() + 60}\n")
    (xcp_host.root / "installed/xen-hypervisor").write_text(f"{boot_time() - 50}\n")
    events: list[TaskEvent] = []

    result = update(
        xcp_host,
        tmp_path,
        events,
        rollup_yum_disablerepo=["epel"],
        rollup_yum_packages=["xen-hypervisor", "kernel*"],
    )

    assert result.ok, result.output_tail
    assert result.facts == {
        "rollup_reboot_required": True,
        "rollup_reboot_reasons": ["needs-restarting", "kernel"],
    }
    assert (xcp_host.root / "yum.log").read_text().split("\n") == [
        "--disablerepo=epel clean metadata",
        "--disablerepo=epel update -y xen-hypervisor kernel*",
        "",
    ]
    assert [(e.task, e.status) for e in events] == [
        ("Drop cached yum metadata", "ok"),
        ("Update packages", "changed"),
        ("Check whether the update needs a reboot", "ok"),
        ("Record whether a reboot is required", "ok"),
    ]


def test_a_host_with_nothing_new_since_boot_needs_no_reboot(xcp_host, tmp_path):
    (xcp_host.root / "needs-restarting-rc").write_text("0\n")
    (xcp_host.root / "installed/kernel").write_text(f"{boot_time() - 50}\n")
    (xcp_host.root / "no-updates").touch()
    events: list[TaskEvent] = []

    result = update(xcp_host, tmp_path, events)

    assert result.ok, result.output_tail
    assert result.facts == {"rollup_reboot_required": False, "rollup_reboot_reasons": []}
    assert (xcp_host.root / "yum.log").read_text() == "clean metadata\nupdate -y\n"
    assert events[1] == TaskEvent("h1", "Update packages", "ok")
