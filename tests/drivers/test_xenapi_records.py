"""Parsing XenAPI records into the model, from a recorded get_all_records fixture."""

import json
from pathlib import Path

import pytest

from rollup.drivers.xenapi.boot import booted_since
from rollup.drivers.xenapi.failures import describe, size
from rollup.drivers.xenapi.records import (
    PoolRecords,
    parse_blocker,
    parse_pool,
    sr_refs,
)
from rollup.errors import DriverError
from rollup.model import GiB, Lock, MiB

FIXTURE = Path(__file__).parent / "fixtures" / "xenapi_pool.json"


def load(**changes):
    data = json.loads(FIXTURE.read_text())
    data.update(changes)
    return PoolRecords(
        pool=data["pool"],
        hosts=data["host"],
        host_metrics=data["host_metrics"],
        vms=data["VM"],
        evacuation_errors=data["host.get_vms_which_prevent_evacuation"],
        sr_names=data["SR.get_name_label"],
    )


@pytest.fixture
def pool():
    return parse_pool(load())


def test_pool_identity_master_and_modes(pool):
    assert pool.id == "55555555-0000-0000-0000-000000000001"
    assert pool.name == "lab-a"
    assert pool.driver == "xenapi"
    assert pool.master == "11111111-0000-0000-0000-000000000001"
    assert pool.ha_enabled is False
    assert pool.rolling_upgrade is True


def test_pool_lock_is_parsed_from_other_config(pool):
    assert pool.lock == Lock("run-42", "ops-1", 4242, 1700001000.0, 1700004600.0)


def test_hosts_carry_metrics_versions_and_boot_marks(pool):
    h1 = pool.host("11111111-0000-0000-0000-000000000001")
    assert (h1.name, h1.address, h1.is_master) == ("h1", "10.0.0.1", True)
    assert h1.memory_total == 256 * GiB
    assert h1.memory_free == 200 * GiB
    assert (h1.version, h1.platform_version) == ("8.2.1", "3.2.1")
    assert (h1.enabled, h1.live) == (True, True)
    assert h1.boot_mark == "1700000000."
    assert h1.agent_start_time == "1700000050."


def test_host_overhead_includes_its_control_domain(pool):
    h1 = pool.host("11111111-0000-0000-0000-000000000001")
    # host.memory_overhead + dom0's memory_static_max + dom0's memory_overhead
    assert h1.memory_overhead == GiB // 8 + 4 * GiB + 40 * MiB
    assert h1.capacity == 256 * GiB - h1.memory_overhead


def test_disabled_and_dead_hosts_are_reported_as_such(pool):
    h2 = pool.host("11111111-0000-0000-0000-000000000002")
    h3 = pool.host("11111111-0000-0000-0000-000000000003")
    assert (h2.enabled, h2.live, h2.is_master) == (False, True, False)
    assert (h3.enabled, h3.live, h3.version) == (True, False, "8.3.0")


def test_templates_snapshots_and_control_domains_are_not_listed(pool):
    names = {vm.name for vm in pool.vms}
    assert names == {"web-1", "db-1", "gpu-1", "nfv-1", "big-1", "old-1", "pci-1", "odd-1"}


def test_vm_memory_placement_affinity_and_ha(pool):
    web = pool.vm("44444444-0000-0000-0000-000000000001")
    assert web.memory == 4 * GiB + 36 * MiB
    assert web.power_state == "Running"
    assert web.host == "11111111-0000-0000-0000-000000000001"
    assert web.affinity == "11111111-0000-0000-0000-000000000001"
    assert web.ha_priority == "restart"


def test_halted_vm_has_no_host_but_keeps_its_affinity(pool):
    old = pool.vm("44444444-0000-0000-0000-000000000006")
    assert (old.host, old.running) == (None, False)
    assert old.affinity == "11111111-0000-0000-0000-000000000002"


def test_pinning_codes_become_blockers_with_reasons(pool):
    by_name = {vm.name: vm for vm in pool.vms}
    (local,) = by_name["db-1"].blockers
    assert (local.kind, local.code) == ("local-sr", "VM_REQUIRES_SR")
    assert local.params == ("OpaqueRef:v2", "OpaqueRef:sr2")
    assert local.reason == "disk on host-local SR 'Local storage on h2' of h2"
    assert [b.kind for b in by_name["gpu-1"].blockers] == ["vgpu"]
    assert [b.kind for b in by_name["nfv-1"].blockers] == ["sriov"]
    assert [b.kind for b in by_name["pci-1"].blockers] == ["pci"]
    assert by_name["pci-1"].blockers[0].reason == "PCI device passed through on h2"


def test_memory_and_ha_evacuation_errors_are_not_pins(pool):
    by_name = {vm.name: vm for vm in pool.vms}
    assert by_name["web-1"].movable
    assert by_name["big-1"].movable


def test_unknown_evacuation_error_blocks_the_vm_closed(pool):
    (odd,) = next(vm for vm in pool.vms if vm.name == "odd-1").blockers
    assert odd.kind == "other"
    assert "VM_REQUIRES_NETWORK" in odd.reason


def test_sr_refs_lists_the_srs_blocker_reasons_need():
    assert sr_refs(load().evacuation_errors) == {"OpaqueRef:sr2"}


def test_missing_field_names_the_object_and_field():
    records = load()
    host = dict(records.hosts["OpaqueRef:h2"])
    del host["memory_overhead"]
    broken = PoolRecords(
        pool=records.pool,
        hosts={**records.hosts, "OpaqueRef:h2": host},
        host_metrics=records.host_metrics,
        vms=records.vms,
    )
    with pytest.raises(
        DriverError, match=r"host record 11111111-.*-000000000002.*'memory_overhead'"
    ):
        parse_pool(broken)


def test_empty_error_is_not_a_blocker():
    assert parse_blocker([], "h1", {}) is None


@pytest.mark.parametrize(
    ("mark", "since", "back"),
    [
        ("1700000100.", "1700000000.", True),
        ("1700000000.", "1700000000.", False),
        ("1699999999.", "1700000000.", False),
        ("", "1700000000.", False),
        ("anything", "", True),
        ("boot-b", "boot-a", True),
    ],
)
def test_booted_since_means_a_newer_boot_time(mark, since, back):
    assert booted_since(mark, since) is back


def test_memory_failure_reads_in_gibibytes():
    text = describe("HOST_NOT_ENOUGH_FREE_MEMORY", [str(4 * GiB), str(int(1.2 * GiB))])
    assert text == "HOST_NOT_ENOUGH_FREE_MEMORY needed 4 GiB, available 1.2 GiB"


def test_failure_params_are_named_through_the_namer():
    names = {"OpaqueRef:sr": "Local storage on h2"}
    text = describe("VM_REQUIRES_SR", ["OpaqueRef:vm", "OpaqueRef:sr"], names.get)
    assert text == "VM_REQUIRES_SR its disk is on SR 'Local storage on h2', not shared"


def test_unknown_failure_lists_its_params():
    assert describe("SR_FULL", ["a", "b"]) == "SR_FULL a b"
    assert size(str(512 * MiB)) == "512 MiB"
