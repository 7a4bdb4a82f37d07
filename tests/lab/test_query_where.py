"""`<class>.get_all_records_where`: xapi's query expressions, as admins' scripts use them."""

from __future__ import annotations

import pytest

from tests.lab.conftest import failure, host, layout, vm


@pytest.fixture
def lab(make_lab):
    return make_lab(
        layout(
            [host("h1"), host("h2")],
            [vm("web-01", 4, "h1"), vm("db-01", 8, "h2"), vm("old-01", 2, None)],
        )
    )


def names(records):
    return sorted(record["name_label"] for record in records.values())


def test_records_where_filters_like_xapi(lab):
    x = lab.session.xenapi
    guests = 'field "is_control_domain" = "false"'
    assert names(x.VM.get_all_records_where(guests)) == ["db-01", "old-01", "web-01"]
    running = f'{guests} and field "power_state" = "Running"'
    assert names(x.VM.get_all_records_where(running)) == ["db-01", "web-01"]
    on_h1 = f'field "resident_on" = "{lab.host("h1")}"'
    assert names(x.VM.get_all_records_where(f"{guests} and ({on_h1})")) == ["web-01"]
    either = 'field "name_label" = "db-01" or field "name_label" = "old-01"'
    assert names(x.VM.get_all_records_where(either)) == ["db-01", "old-01"]
    assert names(x.VM.get_all_records_where(f"not ({guests})")) == [
        "Control domain on host: h1",
        "Control domain on host: h2",
    ]
    assert names(x.host.get_all_records_where('field "name_label" <> "h1"')) == ["h2"]
    assert len(x.host.get_all_records_where("true")) == 2
    assert x.host.get_all_records_where("false") == {}


def test_a_malformed_expression_is_refused(lab):
    x = lab.session.xenapi
    assert failure(lambda: x.VM.get_all_records_where('field "uuid" ='))[0] == "INTERNAL_ERROR"
