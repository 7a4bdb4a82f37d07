"""host.evacuate plans every VM first, fails before anything moves, then bin-packs."""

from __future__ import annotations

import threading
import time

import pytest

from tests.lab.conftest import failure, host, layout, vm


def test_evacuation_moves_every_guest_within_the_targets_memory(make_lab):
    lab = make_lab(
        layout(
            [host("h1", 64), host("h2", 32), host("h3", 32)],
            [vm(f"web-{i:02d}", 4, "h1") for i in range(1, 9)] + [vm("db-01", 8, "h2")],
        )
    )
    x = lab.session.xenapi
    x.host.disable(lab.host("h1"))
    x.host.evacuate(lab.host("h1"))
    assert lab.resident("h1") == []
    assert len(lab.resident("h2")) + len(lab.resident("h3")) == 9
    assert lab.free("h2") >= 0 and lab.free("h3") >= 0
    # evacuation does not disable or re-enable the host itself
    assert x.host.get_enabled(lab.host("h1")) is False


def test_evacuating_an_empty_host_is_a_no_op(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("web-01", 2, "h2")]))
    lab.session.xenapi.host.evacuate(lab.host("h1"))
    assert lab.resident("h2") == ["web-01"]


@pytest.mark.parametrize(
    ("pin", "code"),
    [
        ("local-sr", "VM_REQUIRES_SR"),
        ("pci", "VM_HAS_PCI_ATTACHED"),
        ("vgpu", "VM_HAS_VGPU"),
        ("sriov", "VM_HAS_SRIOV_VIF"),
    ],
)
def test_a_pinned_vm_fails_the_evacuation_before_anything_moves(make_lab, pin, code):
    lab = make_lab(
        layout(
            [host("h1"), host("h2")],
            [vm("web-01", 2, "h1"), vm("web-02", 2, "h1"), vm("pinned-01", 1, "h1", pin=pin)],
        )
    )
    x = lab.session.xenapi
    pinned = lab.vm("pinned-01")
    details = failure(lambda: x.host.evacuate(lab.host("h1")))
    assert details[:2] == [code, pinned]
    if pin == "local-sr":
        sr = details[2]
        assert x.SR.get_name_label(sr) == "Local storage on h1"
        assert x.SR.get_shared(sr) is False
    assert lab.resident("h1") == ["pinned-01", "web-01", "web-02"]
    assert failure(lambda: x.VM.pool_migrate(pinned, lab.host("h2"), {"live": "true"}))[0] == code


def test_a_vm_with_no_room_fails_the_evacuation_before_anything_moves(make_lab):
    lab = make_lab(
        layout(
            [host("h1", 64), host("h2", 32)],
            [vm("small-01", 2, "h1"), vm("huge-01", 24, "h1"), vm("db-01", 8, "h2")],
        )
    )
    details = failure(lambda: lab.session.xenapi.host.evacuate(lab.host("h1")))
    assert details == ["HOST_NOT_ENOUGH_FREE_MEMORY", lab.vm("huge-01")]
    assert lab.resident("h1") == ["huge-01", "small-01"]


def test_no_other_enabled_host_is_no_hosts_available(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("web-01", 2, "h1")]))
    x = lab.session.xenapi
    x.host.disable(lab.host("h2"))
    assert failure(lambda: x.host.evacuate(lab.host("h1"))) == ["NO_HOSTS_AVAILABLE"]


def test_assert_can_evacuate_joins_every_vm_error_in_one_string(make_lab):
    lab = make_lab(
        layout(
            [host("h1"), host("h2")],
            [vm("gpu-01", 2, "h1", pin="vgpu"), vm("nic-01", 1, "h1", pin="sriov")],
        )
    )
    x = lab.session.xenapi
    details = failure(lambda: x.host.assert_can_evacuate(lab.host("h1")))
    assert details[0] == "CANNOT_EVACUATE_HOST"
    assert sorted(details[1].split("|")) == sorted(
        [f"VM_HAS_VGPU,{lab.vm('gpu-01')}", f"VM_HAS_SRIOV_VIF,{lab.vm('nic-01')}"]
    )
    assert x.host.get_vms_which_prevent_evacuation(lab.host("h1")) == {
        lab.vm("gpu-01"): ["VM_HAS_VGPU", lab.vm("gpu-01")],
        lab.vm("nic-01"): ["VM_HAS_SRIOV_VIF", lab.vm("nic-01")],
    }
    x.host.assert_can_evacuate(lab.host("h2"))  # nothing prevents the other one


def test_with_ha_on_an_unprotected_vm_prevents_evacuation(make_lab):
    lab = make_lab(
        layout(
            [host("h1"), host("h2")], [vm("safe-01", 1, "h1", ha="restart"), vm("bare-01", 1, "h1")]
        )
    )
    x = lab.session.xenapi
    x.pool.enable_ha([], {})
    assert x.host.get_vms_which_prevent_evacuation(lab.host("h1")) == {
        lab.vm("bare-01"): ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", lab.vm("bare-01")]
    }


def test_evacuation_never_picks_an_older_host(make_lab):
    lab = make_lab(
        layout(
            [host("h1", 32, "8.3.0"), host("h2", 64, "8.2.1"), host("h3", 32, "8.3.0")],
            [vm("web-01", 2, "h1"), vm("web-02", 2, "h1")],
        )
    )
    x = lab.session.xenapi
    x.host.evacuate(lab.host("h1"))
    assert lab.resident("h3") == ["web-01", "web-02"]
    assert lab.resident("h2") == []


def test_evacuation_respects_the_batch_size_and_per_host_limit(make_lab):
    lab = make_lab(
        layout([host("h1", 64), host("h2", 64)], [vm(f"web-{i:02d}", 2, "h1") for i in range(8)]),
        speed=200,
    )
    peak: list[int] = []
    done = threading.Event()

    def observe() -> None:  # counts live migrations as they overlap
        while not done.is_set():
            peak.append(sum(1 for v in list(lab.pool.vms.values()) if v.migrating_to))
            time.sleep(0.001)

    observer = threading.Thread(target=observe)
    observer.start()
    lab.session.xenapi.host.evacuate(lab.host("h1"), "OpaqueRef:NULL", 5)
    done.set()
    observer.join()
    assert max(peak) == 3  # at most 3 concurrent migrations out of one host
    assert len(lab.resident("h2")) == 8
