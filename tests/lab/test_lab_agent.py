"""host.restart_agent (a toolstack restart, not a reboot) and session.get_this_host."""

from __future__ import annotations

import socket

from tests.lab.conftest import Lab, failure, host, layout, vm, wait_until

# Slow enough to watch the API close and open again: a 10 s pause then 5 s down, /20.
SPEED = 20.0


def stamps(lab: Lab, name: str) -> tuple[float, float]:
    config = lab.session.xenapi.host.get_other_config(lab.host(name))
    return float(config["boot_time"]), float(config["agent_start_time"])


def answers(lab: Lab, name: str) -> bool:
    """Whether the host's API listener accepts connections (a member's says HOST_IS_SLAVE)."""
    address = lab.pool.host_named(name).address
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((address, lab.server.port)) == 0


def wait_for_api_blip(lab: Lab, name: str) -> None:
    """The API goes away for a few simulated seconds, then answers again."""
    wait_until(lambda: not answers(lab, name), timeout=10)
    wait_until(lambda: answers(lab, name), timeout=10)


def test_a_member_restarts_its_toolstack_without_rebooting(make_lab):
    lab = make_lab(
        layout([host("h1"), host("h2")], [vm("web-01", 2, "h2"), vm("db-01", 4, "h2")]),
        speed=SPEED,
    )
    x = lab.session.xenapi
    h2 = lab.host("h2")
    boot_before, agent_before = stamps(lab, "h2")
    domids = {name: x.VM.get_domid(lab.vm(name)) for name in ("web-01", "db-01")}
    x.host.disable(h2)

    assert x.host.restart_agent(h2) == ""
    wait_for_api_blip(lab, "h2")
    wait_until(lambda: stamps(lab, "h2")[1] > agent_before, timeout=10)

    boot_after, agent_after = stamps(lab, "h2")
    assert boot_after == boot_before  # not a reboot
    assert agent_after > agent_before
    # xapi enables a host when its toolstack starts, as after a reboot.
    assert x.host.get_enabled(h2)
    assert x.host_metrics.get_live(x.host.get_metrics(h2))
    assert lab.resident("h2") == ["db-01", "web-01"]
    for name, domid in domids.items():
        assert x.VM.get_power_state(lab.vm(name)) == "Running"
        assert x.VM.get_domid(lab.vm(name)) == domid
    assert lab.machines["h2"].running


def test_an_enabled_master_restarts_its_toolstack_and_stays_enabled(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("web-01", 2, "h1")]), speed=SPEED)
    x = lab.session.xenapi
    h1 = lab.host("h1")
    boot_before, agent_before = stamps(lab, "h1")
    old_session = lab.session._session

    x.host.restart_agent(h1)  # the reply arrives before the agent goes away
    wait_for_api_blip(lab, "h1")

    # The old session died with the toolstack; the official client logs in again.
    boot_after, agent_after = stamps(lab, "h1")
    assert lab.session._session != old_session
    assert boot_after == boot_before
    assert agent_after > agent_before
    assert x.host.get_enabled(h1)
    assert lab.resident("h1") == ["web-01"]
    assert x.VM.get_power_state(lab.vm("web-01")) == "Running"


def test_restart_agent_is_refused_on_a_host_that_is_down_or_already_restarting(make_lab):
    lab = make_lab(layout([host("h1"), host("h2"), host("h3")], []), speed=SPEED)
    x = lab.session.xenapi
    h2, h3 = lab.host("h2"), lab.host("h3")
    x.host.restart_agent(h3)
    assert failure(lambda: x.host.restart_agent(h3))[0] == "OTHER_OPERATION_IN_PROGRESS"
    x.host.disable(h2)
    x.host.reboot(h2)
    assert failure(lambda: x.host.restart_agent(h2))[0] == "OTHER_OPERATION_IN_PROGRESS"
    wait_until(lambda: not x.host_metrics.get_live(x.host.get_metrics(h2)), timeout=10)
    assert failure(lambda: x.host.restart_agent(h2)) == ["HOST_OFFLINE", h2]


def test_a_restart_overtaken_by_a_reboot_leaves_the_boot_to_start_the_toolstack(make_lab):
    # Faster: a 90 s reboot in under a second.
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=100)
    x = lab.session.xenapi
    h2 = lab.host("h2")
    boot_before, _ = stamps(lab, "h2")
    x.host.disable(h2)
    x.host.restart_agent(h2)
    x.host.reboot(h2)  # before the 10 s pause is over
    wait_until(lambda: stamps(lab, "h2")[0] > boot_before, timeout=20)
    wait_until(lambda: x.host.get_enabled(h2), timeout=20)
    boot_after, agent_after = stamps(lab, "h2")
    assert agent_after == boot_after
    assert not lab.pool.host_named("h2").agent_restarting


def test_get_this_host_is_the_master_the_session_was_made_on(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []))
    x = lab.session.xenapi
    this = x.session.get_this_host(lab.session._session)
    assert this == x.pool.get_master(x.pool.get_all()[0]) == lab.host("h1")
    assert x.host.get_name_label(this) == "h1"
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert failure(lambda: x.session.get_this_host(bogus)) == ["HANDLE_INVALID", "session", bogus]


def test_the_new_calls_are_listed_and_restart_agent_has_an_async_form(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), speed=SPEED)
    x = lab.session.xenapi
    methods = x.system.listMethods()
    assert {"host.restart_agent", "Async.host.restart_agent", "session.get_this_host"} <= set(
        methods
    )
    _, agent_before = stamps(lab, "h2")
    task = x.Async.host.restart_agent(lab.host("h2"))
    wait_until(lambda: x.task.get_status(task) == "success", timeout=10)
    wait_until(lambda: stamps(lab, "h2")[1] > agent_before, timeout=10)
    assert x.host.get_enabled(lab.host("h2"))
