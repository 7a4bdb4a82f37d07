"""Faults from a YAML file: each one is visible to a client, and each can be cleared."""

from __future__ import annotations

import pytest

from rollup import bundled
from rollup.errors import BadInput
from rollup.lab.faults import ApiDrop, Faults, HostFaults, VMFaults, load_faults, parse_faults
from tests.lab.conftest import failure, host, layout, vm, wait_until

EXAMPLE = bundled.path("lab/faults.example.yml")


def test_the_example_file_is_valid():
    faults = load_faults(EXAMPLE)
    assert faults.vms["web-01"].fail_migration == 2
    assert faults.hosts["h2"].no_return
    assert faults.master_api_drop == ApiDrop(seconds=120, when="next-reboot")


def test_a_missing_or_empty_file_means_no_faults(tmp_path):
    assert load_faults(tmp_path / "none.yml") == Faults()
    (tmp_path / "empty.yml").write_text("")
    assert load_faults(tmp_path / "empty.yml") == Faults()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"host": {}}, "faults: unknown key 'host'; use one of vms, hosts, master_api_drop"),
        (
            {"hosts": {"h2": {"no_retun": True}}},
            "faults: unknown key 'hosts.h2.no_retun'; use one of",
        ),
        (
            {"hosts": {"h2": {"refuse_ssh": "yes"}}},
            "faults: hosts.h2.refuse_ssh is 'yes'; use true or false",
        ),
        ({"vms": {"a": {"fail_migration": -1}}}, "faults: vms.a.fail_migration is -1; use a count"),
        (
            {"hosts": {"h2": {"return_late": "1m"}}},
            "faults: hosts.h2.return_late is '1m'; use a number",
        ),
        ({"master_api_drop": {"when": "now"}}, "faults: master_api_drop.seconds is missing"),
        (
            {"master_api_drop": {"seconds": 5, "when": "soon"}},
            "faults: master_api_drop.when is 'soon'; use",
        ),
        (["h2"], "faults: the top level must be a mapping"),
    ],
)
def test_a_bad_fault_names_the_key_and_the_fix(data, message):
    with pytest.raises(BadInput) as info:
        parse_faults(data)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bad_yaml_is_bad_input(tmp_path):
    path = tmp_path / "faults.yml"
    path.write_text("hosts: [\n")
    with pytest.raises(BadInput, match="is not valid YAML"):
        load_faults(path)


def test_a_fault_on_an_unknown_host_is_refused(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []))
    with pytest.raises(BadInput, match=r"hosts\.h9: no host .* use one of h1, h2"):
        lab.pool.set_faults(Faults(hosts={"h9": HostFaults(no_return=True)}))


def test_a_vm_migration_fails_n_times_then_succeeds(make_lab):
    faults = Faults(vms={"web-01": VMFaults(fail_migration=2)})
    lab = make_lab(layout([host("h1"), host("h2")], [vm("web-01", 2, "h1")]), faults=faults)
    x = lab.session.xenapi
    web, h1, h2 = lab.vm("web-01"), lab.host("h1"), lab.host("h2")
    for _ in range(2):
        details = failure(lambda: x.VM.pool_migrate(web, h2, {"live": "true"}))
        assert details[:4] == ["VM_MIGRATE_FAILED", web, h1, h2]
        assert lab.resident("h1") == ["web-01"]
    x.VM.pool_migrate(web, h2, {"live": "true"})
    assert lab.resident("h2") == ["web-01"]


def test_a_failing_migration_fails_the_evacuation(make_lab):
    faults = Faults(vms={"web-01": VMFaults(fail_migration=None)})
    lab = make_lab(
        layout([host("h1"), host("h2")], [vm("web-01", 2, "h1"), vm("web-02", 2, "h1")]),
        faults=faults,
    )
    x = lab.session.xenapi
    assert failure(lambda: x.host.evacuate(lab.host("h1")))[0] == "VM_MIGRATE_FAILED"
    assert lab.resident("h1") == ["web-01"]


def back(lab, name):
    x = lab.session.xenapi
    ref = lab.host(name)
    return x.host_metrics.get_live(x.host.get_metrics(ref)) and x.host.get_enabled(ref)


def reboot(lab, name):
    x = lab.session.xenapi
    x.host.disable(lab.host(name))
    x.host.reboot(lab.host(name))
    wait_until(lambda: not x.host_metrics.get_live(x.host.get_metrics(lab.host(name))))


def test_a_host_that_does_not_return_comes_back_when_the_fault_is_cleared(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=1000)
    lab.pool.set_faults(Faults(hosts={"h2": HostFaults(no_return=True)}))
    reboot(lab, "h2")
    down_at = lab.pool.now()
    wait_until(lambda: lab.pool.now() > down_at + 500)  # well past a normal reboot (90 s)
    assert not back(lab, "h2")
    lab.pool.set_faults(Faults())
    wait_until(lambda: back(lab, "h2"))


def test_a_late_host_returns_after_the_extra_delay(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=1000)
    lab.pool.set_faults(Faults(hosts={"h2": HostFaults(return_late=600)}))
    reboot(lab, "h2")
    down_at = lab.pool.now()
    wait_until(lambda: back(lab, "h2"))
    assert lab.pool.now() - down_at >= 600 + 75


def test_a_host_can_come_back_at_its_old_version(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []))
    lab.pool.set_faults(Faults(hosts={"h2": HostFaults(return_old_version=True)}))
    lab.machines["h2"].installed = "8.3.0"
    reboot(lab, "h2")
    wait_until(lambda: back(lab, "h2"))
    version = lab.session.xenapi.host.get_software_version(lab.host("h2"))
    assert version["product_version"] == "8.2.1"


def test_the_master_api_drops_at_once_for_the_given_time(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=1000)
    x = lab.session.xenapi
    lab.pool.set_faults(Faults(master_api_drop=ApiDrop(seconds=300, when="now")))
    with pytest.raises(ConnectionError):
        x.pool.get_all()
    wait_until(lambda: lab.server._listeners[lab.pool.master].is_open)
    assert x.pool.get_all()


def test_the_master_api_drop_can_wait_for_its_next_reboot(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=1000)
    x = lab.session.xenapi
    lab.pool.set_faults(Faults(master_api_drop=ApiDrop(seconds=400, when="next-reboot")))
    assert x.pool.get_all()
    reboot_at = lab.pool.now()
    x.host.disable(lab.host("h1"))
    x.host.reboot(lab.host("h1"))

    def answers() -> bool:
        try:
            return bool(x.pool.get_all())
        except ConnectionError:
            return False

    wait_until(lambda: not answers())
    wait_until(answers)
    assert lab.pool.now() - reboot_at >= 10 + 75 + 400


def test_os_faults_reach_the_host_machine(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []))
    h2 = HostFaults(refuse_ssh=True, fail_patch=True, yum_busy=2)
    lab.pool.set_faults(Faults(hosts={"h2": h2}))
    assert lab.machines["h2"].faults == h2
    assert lab.machines["h1"].faults == HostFaults()
    # yum's lock is held for the next two attempts, then free.
    assert [lab.machines["h2"].take_yum_lock() for _ in range(3)] == [False, False, True]
    lab.pool.set_faults(Faults())
    assert lab.machines["h2"].faults == HostFaults()
