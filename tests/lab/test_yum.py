"""A lab host's yum, rpm and needs-restarting, over real SSH, and the real XCP-ng playbook.

The host installs from the lab's one repository into the same package database the
pool's updater plugin reads: what yum installs over SSH is no longer pending for XAPI.
Hosts on 127.S.30.150-199 (the lab host tests' range).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollup import bundled
from rollup.lab import rpmdb
from rollup.lab.faults import HostFaults
from rollup.lab.hosts import LabMachine
from rollup.lab.package_seed import seed, seeded_rpmdb
from rollup.lab.packages import Installed, Repository
from rollup.remote import PatchResult
from rollup.remote.patcher import AnsiblePatcher
from tests import loopback
from tests.lab_hosts import lab_hosts
from tests.lab_hosts import shell as ssh_shell

_addresses = (loopback.address(30, n) for n in itertools.cycle(range(150, 200)))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[LabMachine, Repository]]:
    """A host of release 8.3 with every update of its stream but the last two pending."""
    repository = seed(["8.3"], 7, tmp_path / "lab" / "repo" / "repository.json")
    for maker in lab_hosts(tmp_path, _addresses):
        machine = maker("h1", version="8.3.0")
        machine.set_packages(seeded_rpmdb(repository, "8.3", 0, 2, time.time()))
        machine.power_on(str(uuid.uuid4()), "8.3.0")  # boots with those packages
        yield machine, repository


def shell(machine: LabMachine) -> Callable[[str], tuple[int, str]]:
    """What a session prints, stdout and stderr together, as a terminal shows them."""
    run = ssh_shell(machine)

    def both(command: str) -> tuple[int, str]:
        code, out, err = run(command)
        return code, out + err

    return both


def boot_btime() -> int:
    line = next(x for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime"))
    return int(line.split()[1])


def test_yum_installs_from_the_labs_repository_and_rpm_tells_a_reboot_is_due(host):
    machine, repository = host
    run = shell(machine)
    code, listed = run("yum check-update")
    pending = repository.pending("8.3", machine.packages() or {})
    assert code == 100 and pending
    assert [line.split()[0] for line in listed.splitlines()] == [
        f"{b.name}.x86_64" for b in pending
    ]
    assert run("needs-restarting -r")[0] == 0
    code, out = run("yum -y update")
    assert code == 0 and out.splitlines()[0] == "Downloading packages:" and "Complete!" in out
    assert f"{pending[0].nvr}.x86_64.rpm" in out
    assert run("yum check-update") == (0, "")
    assert repository.pending("8.3", machine.packages() or {}) == []
    code, out = run("needs-restarting -r")
    assert code == 1 and "  * kernel" in out
    # Installed after the host's boot: rpm says so against this machine's boot time.
    code, out = run("rpm -q --qf '%{INSTALLTIME}\\n' kernel")
    assert code == 0 and int(out) > boot_btime()
    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.3.0")
    run = shell(machine)
    assert run("needs-restarting -r")[0] == 0
    assert int(run("rpm -q --qf '%{INSTALLTIME}\\n' kernel")[1]) < boot_btime()
    assert run("yum -y update") == (0, "No packages marked for update\n")


def test_yum_waits_for_a_held_lock_and_fails_on_the_fail_patch_fault(host):
    machine, repository = host
    run = shell(machine)
    machine.set_faults(HostFaults(yum_busy=2))
    code, out = run("yum -y update")
    assert code == 0, out
    assert out.count("Another app is currently holding the yum lock") == 2
    repository.publish(["userspace"], "8.3")
    machine.set_faults(HostFaults(fail_patch=True))
    code, out = run("yum -y update")
    assert code == 1 and "lab fault fail-patch is set on h1" in out
    assert [b.name for b in repository.pending("8.3", machine.packages() or {})] == ["curl"]


def test_yum_downloadonly_fills_the_cache_an_install_then_takes_from(host):
    machine, repository = host
    run = shell(machine)
    pending = repository.pending("8.3", machine.packages() or {})
    before = machine.packages()
    code, out = run("yum -y update --downloadonly")
    megabytes = sum(b.size for b in pending) / 2**20
    assert code == 0
    assert out.strip() == (
        f'exiting because "Download Only" specified: {len(pending)} packages downloaded'
        f" ({megabytes:.1f} MiB), 0 in cache"
    )
    assert machine.packages() == before, "--downloadonly installs nothing"
    assert machine.downloaded() == {b.nvr for b in pending}
    code, out = run("yum -y update --downloadonly")
    assert out.strip().endswith(f"0 packages downloaded (0.0 MiB), {len(pending)} in cache")
    code, out = run("yum -y update")
    assert code == 0 and out.splitlines()[0] == "Updated:", "nothing left to download"
    assert repository.pending("8.3", machine.packages() or {}) == []
    assert machine.downloaded() == set(), "what was installed leaves the cache"


def test_the_real_xcp_ng_playbook_patches_a_lab_host_and_asks_for_the_reboot(host, tmp_path):
    machine, repository = host
    patcher = AnsiblePatcher(tmp_path)

    def patch() -> PatchResult:
        playbook = bundled.playbook("xcp-ng-update.yml")
        return patcher.play(machine.remote_host(), playbook, {}, lambda *_: None, lambda: False)

    result = patch()
    assert result.ok, result.output_tail
    assert result.reboot_required
    assert repository.pending("8.3", machine.packages() or {}) == []
    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.3.0")
    # A curl fix only: yum-utils' needs-restarting counts no core package, the playbook's
    # own check sees no kernel, Xen or toolstack installed since the boot.
    repository.publish(["userspace"], "8.3")
    result = patch()
    assert result.ok, result.output_tail
    assert not result.reboot_required
    installed: dict[str, Installed] = rpmdb.read(machine.root) or {}
    assert installed["curl"].release == repository.latest("8.3")["curl"].release
