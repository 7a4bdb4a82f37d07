"""A lab host's yum, rpm and needs-restarting, over real SSH, and the real XCP-ng playbook.

The host installs from the lab's repository into the same package database the pool's
updater plugin reads: what yum installs over SSH is no longer pending for XAPI. Each
test runs on both kinds of lab host: one whose yum is real dnf over a real rpm database,
installing real RPMs from the lab's mirror (what a machine with dnf gives every lab),
and one with the lab's stand-in (a machine without dnf, lab/yum.py).
Hosts on 127.S.30.150-199 (the lab host tests' range).
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollup import bundled
from rollup.lab import rpm_builds, rpmdb
from rollup.lab.faults import HostFaults
from rollup.lab.hosts import LabMachine
from rollup.lab.package_seed import seed, seeded_rpmdb
from rollup.lab.packages import Installed, Repository
from rollup.lab.yum_mirror import YumMirror
from rollup.remote import PatchResult
from rollup.remote.patcher import AnsiblePatcher
from tests import loopback
from tests.lab_hosts import SPEED, lab_hosts
from tests.lab_hosts import shell as ssh_shell

_addresses = (loopback.address(30, n) for n in itertools.cycle(range(150, 200)))


@dataclass
class Host:
    machine: LabMachine
    repository: Repository
    real: bool
    mirror: YumMirror | None  # it takes in what is published, as the lab's does


@pytest.fixture(params=["real", "stand-in"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    """A host of release 8.3 with every update of its stream but the last two pending."""
    real = request.param == "real"
    if real:
        missing = rpm_builds.missing_tools()
        assert not missing, (
            f"{', '.join(missing)} missing: apt-get install dnf dnf-plugins-core rpm createrepo-c"
        )
    repository = seed(["8.3"], 7, tmp_path / "lab" / "repo" / "repository.json")
    mirror = None
    if real:
        rpm_builds.refresh(repository)
        mirror = YumMirror(tmp_path / "lab" / "repo", speed=lambda: SPEED)
        mirror.start()
    try:
        for maker in lab_hosts(tmp_path, _addresses):
            machine = maker("h1", version="8.3.0", mirror=mirror.url if mirror else None)
            assert machine.disk.real == real
            machine.set_packages(seeded_rpmdb(repository, "8.3", 0, 2, time.time()))
            machine.power_on(str(uuid.uuid4()), "8.3.0")  # boots with those packages
            yield Host(machine, repository, real, mirror)
    finally:
        if mirror is not None:
            mirror.stop()


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


def listed(output: str) -> list[str]:
    """The packages `yum check-update` lists (name.arch), in its order."""
    return [line.split()[0] for line in output.splitlines() if re.match(r"^\S+\.x86_64\s", line)]


def test_yum_installs_from_the_labs_repository_and_rpm_tells_a_reboot_is_due(host: Host):
    machine, repository = host.machine, host.repository
    run = shell(machine)
    code, out = run("yum check-update")
    pending = repository.pending("8.3", machine.packages() or {})
    assert code == 100 and pending
    assert listed(out) == [f"{b.name}.x86_64" for b in pending]
    assert run("needs-restarting -r")[0] == 0
    code, out = run("yum -y update")
    assert code == 0 and "Complete!" in out
    assert f"{pending[0].nvr}.x86_64.rpm" in out
    code, out = run("yum check-update")
    assert code == 0 and listed(out) == []
    assert repository.pending("8.3", machine.packages() or {}) == []
    code, out = run("needs-restarting -r")
    assert code == 1 and "  * kernel" in out
    # Installed after the host's boot: rpm says so against this machine's boot time.
    code, out = run("rpm -q --qf '%{INSTALLTIME}\\n' kernel")
    assert code == 0 and all(int(t) > boot_btime() for t in out.split()[-1:])
    machine.power_off()
    machine.power_on(str(uuid.uuid4()), "8.3.0")
    run = shell(machine)
    assert run("needs-restarting -r")[0] == 0
    times = run("rpm -q --qf '%{INSTALLTIME}\\n' kernel")[1].split()
    assert times and all(int(t) < boot_btime() for t in times)
    code, out = run("yum -y update")
    assert code == 0
    assert ("Nothing to do." if host.real else "No packages marked for update") in out


def test_yum_waits_for_a_held_lock_and_fails_on_the_fail_patch_fault(host: Host):
    machine, repository = host.machine, host.repository
    run = shell(machine)
    machine.set_faults(HostFaults(yum_busy=2))
    code, out = run("yum -y update")
    assert code == 0, out
    if host.real:
        assert "Waiting for process with pid" in out  # dnf/lock.py, while the pid lives
    else:
        assert out.count("Another app is currently holding the yum lock") == 2
    assert repository.pending("8.3", machine.packages() or {}) == []
    repository.publish(["userspace"], "8.3")
    machine.set_faults(HostFaults(fail_patch=True))
    code, out = run("yum -y update")
    assert code == 1 and "lab fault fail-patch is set on h1" in out
    assert [b.name for b in repository.pending("8.3", machine.packages() or {})] == ["curl"]


def test_yum_downloadonly_fills_the_cache_an_install_then_takes_from(host: Host):
    machine, repository = host.machine, host.repository
    run = shell(machine)
    pending = repository.pending("8.3", machine.packages() or {})
    before = machine.packages()
    code, out = run("yum -y update --downloadonly")
    assert code == 0, out
    assert machine.packages() == before, "--downloadonly installs nothing"
    assert machine.downloaded() == {b.nvr for b in pending}
    if not host.real:
        megabytes = sum(b.size for b in pending) / 2**20
        assert out.strip() == (
            f'exiting because "Download Only" specified: {len(pending)} packages downloaded'
            f" ({megabytes:.1f} MiB), 0 in cache"
        )
    code, out = run("yum -y update --downloadonly")
    assert code == 0 and machine.downloaded() == {b.nvr for b in pending}
    served = list(host.mirror.served) if host.mirror else []
    code, out = run("yum -y update")
    assert code == 0
    if host.mirror is not None:
        assert host.mirror.served == served, "nothing left to download"
    else:
        assert "Downloading packages:" not in out, "nothing left to download"
    assert repository.pending("8.3", machine.packages() or {}) == []
    assert machine.downloaded() == set(), "what was installed leaves the cache"


def test_the_real_xcp_ng_playbook_patches_a_lab_host_and_asks_for_the_reboot(host: Host, tmp_path):
    machine, repository = host.machine, host.repository
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
