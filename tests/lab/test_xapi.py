"""The lab's XenAPI server speaks xapi's protocol to the official client and to XO's."""

from __future__ import annotations

import http.client
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from rollup.lab.xapi.calls import MAX_EVENT_WAIT
from tests.lab.conftest import PREFIX, failure, host, layout, vm, wait_until


@pytest.fixture
def lab(make_lab):
    return make_lab(
        layout(
            [host("h1"), host("h2"), host("h3")],
            [vm("web-01", 4, "h1"), vm("db-01", 8, "h2"), vm("old-01", 2, None)],
        )
    )


def raw(lab, path: str, method: str, *params, address: str | None = None):
    """POST one XML-RPC call without the client's help; returns (response, body)."""
    connection = http.client.HTTPConnection(address or f"{PREFIX}1", lab.server.port, timeout=5)
    connection.request(
        "POST", path, xmlrpc.client.dumps(params, method), {"Content-Type": "text/xml"}
    )
    response = connection.getresponse()
    return response, response.read()


def test_bad_credentials_are_refused(lab):
    session = XenAPI.Session(lab.server.url)
    details = failure(lambda: session.xenapi.login_with_password("root", "wrong"))
    assert details[0] == "SESSION_AUTHENTICATION_FAILED"


def test_login_takes_two_or_four_arguments_and_logout_ends_the_session(lab):
    session = XenAPI.Session(lab.server.url)
    session.xenapi.login_with_password("root", "lab")
    assert session.xenapi.pool.get_all()
    handle = session.handle
    session.xenapi.session.logout()
    proxy = xmlrpc.client.ServerProxy(lab.server.url, allow_none=True)
    assert proxy.pool.get_all(handle)["ErrorDescription"] == ["SESSION_INVALID", handle]


def test_unknown_session_is_invalid(lab):
    proxy = xmlrpc.client.ServerProxy(lab.server.url, allow_none=True)
    reply = proxy.host.get_all("OpaqueRef:nope")
    assert reply == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:nope"]}


def test_errors_carry_their_parameters(lab):
    x = lab.session.xenapi
    assert failure(lambda: x.VM.get_record("OpaqueRef:nope")) == [
        "HANDLE_INVALID", "VM", "OpaqueRef:nope",
    ]  # fmt: skip
    assert failure(lambda: x.host.frobnicate()) == ["MESSAGE_METHOD_UNKNOWN", "host.frobnicate"]
    assert failure(lambda: x.VM.start(lab.vm("old-01"))) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "3", "1",
    ]  # fmt: skip
    assert failure(lambda: x.VM.get_by_uuid("nope")) == ["UUID_INVALID", "VM", "nope"]


def test_a_member_answers_host_is_slave_with_the_master_address(lab):
    member = XenAPI.Session(f"http://{PREFIX}2:{lab.server.port}")
    details = failure(lambda: member.xenapi.login_with_password("root", "lab"))
    assert details == ["HOST_IS_SLAVE", f"{PREFIX}1"]


def test_replies_are_compact_text_xml_on_every_path(lab):
    for path in ("/", "/xmlrpc"):
        response, body = raw(lab, path, "session.login_with_password", "root", "lab")
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/xml"
        assert b">\n<" not in body and b"> <" not in body
        assert xmlrpc.client.loads(body)[0][0]["Status"] == "Success"


def test_jsonrpc_answers_200_in_xml_so_xen_orchestra_falls_back(lab):
    response, _ = raw(lab, "/jsonrpc", "session.login_with_password", "root", "lab")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/xml"


def test_list_methods_names_the_classes_a_client_caches(lab):
    methods = lab.session.xenapi.system.listMethods()
    for cls in ("pool", "host", "host_metrics", "VM", "task", "SR"):
        assert f"{cls}.get_all_records" in methods
        assert f"{cls}.get_by_uuid" in methods
    assert "Async.host.evacuate" in methods


def test_records_have_one_field_set_per_class_and_int64_as_strings(lab):
    x = lab.session.xenapi
    for cls in ("pool", "host", "host_metrics", "VM", "SR"):
        records = getattr(x, cls).get_all_records()
        assert len({frozenset(r) for r in records.values()}) == 1, cls
    vms = x.VM.get_all_records()
    assert all(isinstance(r["memory_static_max"], str) for r in vms.values())
    assert sum(r["is_control_domain"] for r in vms.values()) == 3
    metrics = x.host_metrics.get_all_records()
    assert all(isinstance(r["memory_total"], str) for r in metrics.values())
    uuids = [
        r["uuid"] for cls in ("pool", "host", "host_metrics", "VM", "SR")
        for r in getattr(x, cls).get_all_records().values()
    ]  # fmt: skip
    assert len(uuids) == len(set(uuids))
    ref = lab.host("h2")
    assert x.host.get_by_uuid(x.host.get_uuid(ref)) == ref
    assert x.host.get_software_version(ref)["product_version"] == "8.2.1"
    assert x.host.get_software_version(ref)["platform_version"] == "3.2.1"


def test_async_task_progress_moves_and_the_task_stays_until_destroyed(make_lab):
    lab = make_lab(layout([host("h1", 64), host("h2", 64)], [vm("big-01", 16, "h1")]), speed=100)
    x = lab.session.xenapi
    task = x.Async.VM.pool_migrate(lab.vm("big-01"), lab.host("h2"), {"live": "true"})
    seen = set()
    wait_until(
        lambda: seen.add(float(x.task.get_progress(task))) or x.task.get_status(task) != "pending"
    )
    assert x.task.get_status(task) == "success"
    assert len({p for p in seen if 0 < p < 1}) >= 2
    assert x.task.get_result(task) == ""
    assert x.task.get_error_info(task) == []
    assert lab.resident("h2") == ["big-01"]
    x.task.destroy(task)
    assert failure(lambda: x.task.get_status(task)) == ["HANDLE_INVALID", "task", task]


def test_a_cancelled_migration_leaves_the_vm_where_it_was(make_lab):
    lab = make_lab(layout([host("h1", 64), host("h2", 64)], [vm("big-01", 16, "h1")]), speed=20)
    x = lab.session.xenapi
    task = x.Async.VM.pool_migrate(lab.vm("big-01"), lab.host("h2"), {"live": "true"})
    wait_until(lambda: float(x.task.get_progress(task)) > 0)
    x.task.cancel(task)
    wait_until(lambda: x.task.get_status(task) == "cancelled")
    assert x.task.get_error_info(task) == ["TASK_CANCELLED", task]
    assert lab.resident("h1") == ["big-01"]


def test_a_failed_async_call_reports_its_error_in_the_task(lab):
    x = lab.session.xenapi
    task = x.Async.host.reboot(lab.host("h2"))
    wait_until(lambda: x.task.get_status(task) != "pending")
    assert x.task.get_status(task) == "failure"
    assert x.task.get_error_info(task) == ["HOST_NOT_DISABLED"]


# The waiter asks to wait longer than this test may take: only the change can end it.
@pytest.mark.timeout(MAX_EVENT_WAIT / 2)
def test_event_from_wakes_a_waiter_on_a_change(lab):
    x = lab.session.xenapi
    first = getattr(x.event, "from")(["host"], "", 0.0)
    assert {e["class"] for e in first["events"]} == {"host"}
    assert first["valid_ref_counts"]["host"] == 3
    result = {}
    waiter = XenAPI.Session(lab.server.url)
    waiter.xenapi.login_with_password("root", "lab")

    def wait() -> None:
        result.update(
            getattr(waiter.xenapi.event, "from")(["host", "task"], first["token"], 3600.0)
        )

    thread = threading.Thread(target=wait)
    thread.start()
    # Give the waiter time to block (if it has not, the change still reaches it).
    time.sleep(0.2)
    x.host.disable(lab.host("h3"))  # the server still answers while the waiter blocks
    thread.join()
    changed = [e for e in result["events"] if e["class"] == "host"]
    assert changed[-1]["snapshot"]["enabled"] is False
    assert changed[-1]["operation"] == "mod"
    assert int(result["token"]) > int(first["token"])
    assert result["valid_ref_counts"]["task"] == len(x.task.get_all())


def test_event_from_times_out_empty_and_inject_makes_an_event(lab):
    x = lab.session.xenapi
    token = getattr(x.event, "from")(["*"], "", 0.0)["token"]
    assert getattr(x.event, "from")(["VM"], token, 0.05)["events"] == []
    pool = x.pool.get_all()[0]
    x.event.inject("pool", pool)
    events = getattr(x.event, "from")(["pool"], token, 1)["events"]
    assert [(e["class"], e["ref"], e["operation"]) for e in events] == [("pool", pool, "mod")]


def test_a_token_too_old_is_events_lost(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], []), events_kept=4)
    x = lab.session.xenapi
    for _ in range(3):
        x.host.disable(lab.host("h2"))
        x.host.enable(lab.host("h2"))
    assert failure(lambda: getattr(x.event, "from")(["host"], "1", 0.0)) == ["EVENTS_LOST"]


def test_a_token_this_lab_never_issued_is_events_lost(lab):
    # A client's token from before the lab restarted must not read as "nothing changed".
    x = lab.session.xenapi
    token = getattr(x.event, "from")(["host"], "", 0.0)["token"]
    ahead = str(int(token) + 1000)
    assert failure(lambda: getattr(x.event, "from")(["host"], ahead, 0.0)) == ["EVENTS_LOST"]


def test_other_config_is_a_barrier(lab):
    x = lab.session.xenapi
    pool = x.pool.get_all()[0]
    x.pool.add_to_other_config(pool, "rollup.lock", "run-1")
    details = failure(lambda: x.pool.add_to_other_config(pool, "rollup.lock", "run-2"))
    assert details[0] == "MAP_DUPLICATE_KEY"
    assert x.pool.get_other_config(pool)["rollup.lock"] == "run-1"
    x.pool.remove_from_other_config(pool, "rollup.lock")
    assert "rollup.lock" not in x.pool.get_other_config(pool)


def test_ha_can_be_disabled_and_enabled(lab):
    x = lab.session.xenapi
    pool = x.pool.get_all()[0]
    x.pool.enable_ha([], {})
    assert x.pool.get_ha_enabled(pool) is True
    x.pool.disable_ha()
    assert x.pool.get_ha_enabled(pool) is False


def test_whole_numbers_may_come_as_strings(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("a-01", 1, "h1"), vm("b-01", 1, "h1")]))
    x = lab.session.xenapi
    x.host.disable(lab.host("h1"))
    x.host.evacuate(lab.host("h1"), "OpaqueRef:NULL", "1")
    assert lab.resident("h2") == ["a-01", "b-01"]


def test_server_time_is_a_datetime(lab):
    value = lab.session.xenapi.host.get_servertime(lab.host("h1"))
    assert isinstance(value, xmlrpc.client.DateTime)
