"""host.reboot: refused while enabled; down, back with a new boot, re-enabled by xapi."""

from __future__ import annotations

import XenAPI

from tests.lab.conftest import PREFIX, failure, host, layout, vm, wait_until


def booted(lab, name: str) -> tuple[float, float]:
    config = lab.session.xenapi.host.get_other_config(lab.host(name))
    return float(config["boot_time"]), float(config["agent_start_time"])


def back(lab, name: str) -> bool:
    """Live and enabled; False while the API does not answer (the master rebooting)."""
    x = lab.session.xenapi
    try:
        ref = lab.host(name)
        return x.host_metrics.get_live(x.host.get_metrics(ref)) and x.host.get_enabled(ref)
    except ConnectionError:
        return False


def test_an_enabled_host_refuses_to_reboot(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []))
    assert failure(lambda: lab.session.xenapi.host.reboot(lab.host("h2"))) == ["HOST_NOT_DISABLED"]


def test_a_member_reboots_through_every_phase_and_comes_back_enabled(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=100)
    x = lab.session.xenapi
    h2 = lab.host("h2")
    before = booted(lab, "h2")
    x.host.disable(h2)
    x.host.reboot(h2)
    assert failure(lambda: x.host.enable(h2)) == ["HOST_DISABLED_UNTIL_REBOOT", h2]
    wait_until(lambda: not x.host_metrics.get_live(x.host.get_metrics(h2)))
    assert failure(lambda: x.host.enable(h2)) == ["HOST_OFFLINE", h2]
    wait_until(lambda: x.host_metrics.get_live(x.host.get_metrics(h2)))
    if not x.host.get_enabled(h2):  # toolstack still starting
        assert failure(lambda: x.host.enable(h2)) in (["HOST_STILL_BOOTING"], ["HOST_OFFLINE", h2])
    wait_until(lambda: back(lab, "h2"))
    after = booted(lab, "h2")
    assert after[0] > before[0] and after[1] > before[1]
    assert lab.machines["h2"].running and lab.machines["h2"].boot_id


def test_vms_left_on_a_host_that_goes_down_are_halted(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("web-01", 2, "h2")]))
    x = lab.session.xenapi
    x.host.disable(lab.host("h2"))
    x.host.reboot(lab.host("h2"))
    wait_until(lambda: x.VM.get_power_state(lab.vm("web-01")) == "Halted")
    assert x.VM.get_resident_on(lab.vm("web-01")) == "OpaqueRef:NULL"
    wait_until(lambda: back(lab, "h2"))
    assert x.VM.get_power_state(lab.vm("web-01")) == "Halted"


def test_rebooting_the_master_drops_the_api_until_it_is_back(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=100)
    x = lab.session.xenapi
    h1 = lab.host("h1")
    before = booted(lab, "h1")
    x.host.disable(h1)
    x.host.reboot(h1)
    refused = []

    def down() -> bool:
        try:
            x.pool.get_all()
        except ConnectionError:
            refused.append(True)
            return True
        return False

    wait_until(down)
    wait_until(lambda: not down())  # the client logs in again by itself (SESSION_INVALID)
    wait_until(lambda: back(lab, "h1"))
    assert booted(lab, "h1") > before
    member = XenAPI.Session(f"http://{PREFIX}2:{lab.server.port}")
    assert failure(lambda: member.xenapi.login_with_password("root", "lab"))[0] == "HOST_IS_SLAVE"


def test_a_host_boots_the_version_its_patch_installed(make_lab):
    lab = make_lab(layout([host("h1"), host("h2"), host("h3")], [vm("web-01", 2, "h1")]))
    x = lab.session.xenapi
    pool = x.pool.get_all()[0]
    lab.machines["h2"].installed = "8.3.0"
    x.host.disable(lab.host("h2"))
    x.host.reboot(lab.host("h2"))
    wait_until(lambda: back(lab, "h2"))
    version = x.host.get_software_version(lab.host("h2"))
    assert (version["product_version"], version["platform_version"]) == ("8.3.0", "3.3.0")
    # xapi's db_gc notices the mixed pool within 30 s (db_gc.ml), not at once.
    wait_until(lambda: "rolling_upgrade_in_progress" in x.pool.get_other_config(pool))
    x.VM.pool_migrate(lab.vm("web-01"), lab.host("h2"), {"live": "true"})
    details = failure(lambda: x.VM.pool_migrate(lab.vm("web-01"), lab.host("h3"), {}))
    assert details == ["NOT_SUPPORTED_DURING_UPGRADE"]
    for name in ("h1", "h3"):
        lab.machines[name].installed = "8.3.0"
        x.host.disable(lab.host(name))
        x.host.reboot(lab.host(name))
        wait_until(lambda name=name: back(lab, name))
    wait_until(lambda: "rolling_upgrade_in_progress" not in x.pool.get_other_config(pool))
