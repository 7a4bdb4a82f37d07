"""A Proxmox VE lab host's apt-get, apt, dpkg-query and ha-manager, over real SSH, and the
real Proxmox playbook.

The tools are yum's over a Debian face: the same repository, package database, cache,
lock and faults, so what apt installs over SSH is no longer pending for the pool either.
Hosts on 127.S.30.200-249 (beside test_hosts.py's and test_yum.py's ranges).
"""

from __future__ import annotations

import itertools
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollup import bundled
from rollup.lab.faults import HostFaults
from rollup.lab.hosts import LabMachine
from rollup.lab.package_seed import seed, seeded_rpmdb
from rollup.lab.packages import Repository
from rollup.remote import ansible
from rollup.remote.ansible import TaskEvent
from tests import loopback
from tests.lab_hosts import lab_hosts, shell

_addresses = (loopback.address(30, n) for n in itertools.cycle(range(200, 250)))
UPGRADE = (
    "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef"
    " -o Dpkg::Options::=--force-confold dist-upgrade"
)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[LabMachine, Repository]]:
    """A Proxmox host of stream 8.3 with every update of its stream pending."""
    repository = seed(["8.3"], 7, tmp_path / "lab" / "repo" / "repository.json")
    for maker in lab_hosts(tmp_path, _addresses):
        machine = maker("h1", version="8.3.0", tools="deb", shared_etc_pve=tmp_path / "pmxcfs")
        machine.set_packages(seeded_rpmdb(repository, "8.3", 0, 2, time.time()))
        machine.power_on(str(uuid.uuid4()), "8.3.0")  # boots with those packages
        yield machine, repository


def deb(version: str, release: str) -> str:
    return f"{version}-{release}"


def test_apt_lists_what_is_pending_and_dist_upgrade_installs_it(host):
    machine, repository = host
    run = shell(machine)
    installed = machine.packages() or {}
    pending = repository.pending("8.3", installed)
    assert pending
    code, out, _ = run("apt list --upgradable")
    assert code == 0
    assert out.splitlines() == [
        "Listing...",
        *(
            f"{b.name}/stable {deb(b.version, b.release)} amd64 [upgradable from: "
            f"{deb(installed[b.name].version, installed[b.name].release)}]"
            for b in pending
        ),
    ]
    code, out, _ = run("apt-get update -q")
    assert code == 0 and out.splitlines()[-1] == "Reading package lists... Done"
    code, out, err = run(UPGRADE)
    assert code == 0, err
    lines = out.splitlines()
    upgraded = lines[lines.index("The following packages will be upgraded:") + 1]
    assert upgraded.split() == [b.name for b in pending]
    assert f"{len(pending)} upgraded, 0 newly installed, 0 to remove and 0 not upgraded." in lines
    for build in pending:
        assert f"Setting up {build.name} ({deb(build.version, build.release)}) ..." in lines
    assert run("apt list --upgradable")[:2] == (0, "Listing...\n")
    assert repository.pending("8.3", machine.packages() or {}) == []
    code, out, _ = run(UPGRADE)
    assert code == 0 and "0 upgraded, 0 newly installed" in out and "Setting up" not in out

    kernel = repository.latest("8.3")["kernel"]
    curl = repository.latest("8.3")["curl"]
    assert run("dpkg-query -W -f='${Version}\\n' kernel")[:2] == (
        0,
        f"{deb(kernel.version, kernel.release)}\n",
    )
    assert run("dpkg-query -W curl")[:2] == (0, f"curl\t{deb(curl.version, curl.release)}\n")
    code, out, err = run("dpkg-query -W -f='${Version}\\n' no-such-package kernel")
    assert (code, err) == (1, "dpkg-query: no packages found matching no-such-package\n")
    assert out == f"{deb(kernel.version, kernel.release)}\n"


def test_a_kernel_build_writes_reboot_required_and_a_reboot_clears_it(host):
    machine, repository = host
    run = shell(machine)
    required = machine.root / "run/reboot-required"
    assert run(UPGRADE)[0] == 0
    assert required.read_text() == "*** System restart required ***\n"
    assert required.with_name("reboot-required.pkgs").read_text() == "kernel\nxen-hypervisor\n"

    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.3.0")
    assert not required.exists() and not required.with_name("reboot-required.pkgs").exists()
    repository.publish(["userspace", "xapi"], "8.3")
    run = shell(machine)
    code, out, _ = run(UPGRADE)
    assert code == 0 and "Setting up curl" in out
    assert not required.exists(), "neither curl nor the API daemons need a reboot"
    repository.publish(["kernel"], "8.3")
    assert run(UPGRADE)[0] == 0
    assert required.with_name("reboot-required.pkgs").read_text() == "kernel\n"


def test_download_only_fills_the_cache_an_upgrade_then_takes_from(host):
    machine, repository = host
    run = shell(machine)
    pending = repository.pending("8.3", machine.packages() or {})
    before = machine.packages()
    code, out, _ = run("apt-get -y -q -d dist-upgrade")
    assert code == 0
    size = sum(b.size for b in pending) / 1000**2
    assert out.splitlines()[-1] == (
        f"Download complete and in download only mode: {len(pending)} packages downloaded"
        f" ({size:,.1f} MB), 0 in cache"
    )
    assert sum(line.startswith("Get:") for line in out.splitlines()) == len(pending)
    assert machine.packages() == before, "--download-only installs nothing"
    assert machine.downloaded() == {b.nvr for b in pending}
    assert not (machine.root / "run/reboot-required").exists()
    code, out, _ = run("apt-get -y --download-only dist-upgrade")
    assert out.splitlines()[-1].endswith(f"0 packages downloaded (0 B), {len(pending)} in cache")

    code, out, _ = run(UPGRADE)
    assert code == 0
    assert "Get:" not in out, "nothing left to download"
    assert f"Need to get 0 B/{size:,.1f} MB of archives." in out.splitlines()
    assert repository.pending("8.3", machine.packages() or {}) == []
    assert machine.downloaded() == set(), "what was installed leaves the cache"


def test_the_fail_patch_fault_fails_the_upgrade_and_a_held_lock_is_waited_for(host):
    machine, repository = host
    run = shell(machine)
    before = machine.packages()
    machine.set_faults(HostFaults(fail_patch=True))
    code, out, err = run(UPGRADE)
    assert code == 100 and out == ""
    assert err.startswith("E: lab fault fail-patch is set on h1")
    assert machine.packages() == before, "nothing installed"
    assert not (machine.root / "run/reboot-required").exists()

    machine.set_faults(HostFaults(yum_busy=None))
    code, _, err = run(UPGRADE)
    assert code == 100
    assert "E: Could not get lock /var/lib/dpkg/lock-frontend" in err
    assert machine.packages() == before

    machine.set_faults(HostFaults(yum_busy=2))
    code, _, err = run(UPGRADE)
    assert code == 0 and err.count("Waiting for cache lock") == 2
    assert repository.pending("8.3", machine.packages() or {}) == []


def test_ha_manager_queues_maintenance_commands_on_the_shared_etc_pve(host, tmp_path):
    machine, _ = host
    run = shell(machine)
    commands = tmp_path / "pmxcfs/ha/crm_commands"
    assert (machine.root / "etc/pve").resolve() == (tmp_path / "pmxcfs").resolve()
    assert run("ha-manager status")[:2] == (0, "quorum OK\n")
    assert run("ha-manager crm-command node-maintenance enable h1") == (0, "", "")
    # Another node of the cluster, reached by the local connection: the same /etc/pve.
    other = LabMachine("h2", tmp_path / "lab", tools="deb", shared_etc_pve=tmp_path / "pmxcfs")
    done = subprocess.run(
        ["ha-manager", "crm-command", "node-maintenance", "disable", "h1"],
        env={**other.environment, "PATH": other.local_path},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert commands.read_text() == "node-maintenance enable h1\nnode-maintenance disable h1\n"

    (tmp_path / "pmxcfs/ha/manager_status.txt").write_text("quorum OK\nmaster h2 (active)\n")
    assert run("ha-manager status")[:2] == (0, "quorum OK\nmaster h2 (active)\n")


@pytest.mark.parametrize(
    "arguments",
    [
        "crm-command node-maintenance start h1",
        "crm-command node-maintenance enable",
        "crm-command node-maintenance enable h1 h2",
        "crm-command migrate vm:100 h2",
        "crm-command",
    ],
)
def test_ha_manager_refuses_wrong_arguments_with_its_usage(host, arguments):
    machine, _ = host
    code, out, err = shell(machine)(f"ha-manager {arguments}")
    assert (code, out) == (255, "")
    assert "USAGE: ha-manager crm-command node-maintenance <enable|disable> <node>" in err
    assert not (machine.root / "etc/pve/ha/crm_commands").exists()


def test_the_real_proxmox_playbook_upgrades_a_lab_host_and_asks_for_the_reboot(host, tmp_path):
    machine, repository = host

    def update() -> ansible.PlayResult:
        events: list[TaskEvent] = []
        result = ansible.play(
            machine.remote_host(),
            bundled.playbook("proxmox-update.yml"),
            {"rollup_reboot_required_file": str(machine.root / "run/reboot-required")},
            output_dir=tmp_path / "ansible",
            on_event=events.append,
        )
        assert result.ok, result.output_tail
        assert [e.task for e in events] == [
            "Refresh the package lists",
            "Upgrade the packages",
            "Check whether the update needs a reboot",
            "Record whether a reboot is required",
        ]
        return result

    boot = machine.boot_id()
    result = update()
    assert machine.boot_id() == boot, "the playbook never reboots the host itself"
    assert result.facts == {
        "rollup_reboot_required": True,
        "rollup_reboot_reasons": ["kernel", "xen-hypervisor"],
    }
    assert repository.pending("8.3", machine.packages() or {}) == []
    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.3.0")
    # A curl fix only: nothing that takes effect at boot was installed since it.
    repository.publish(["userspace"], "8.3")
    result = update()
    assert result.facts == {"rollup_reboot_required": False, "rollup_reboot_reasons": []}
    installed = machine.packages() or {}
    assert installed["curl"].release == repository.latest("8.3")["curl"].release
