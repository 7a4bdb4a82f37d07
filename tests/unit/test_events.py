import io
import json

import jsonschema

from rollup import bundled
from rollup.output.event_schema import schema
from rollup.run import events

SCHEMA_FILE = bundled.path("schemas/events.schema.json")


def sample(cls):
    values = {"str": "x", "float": 0.5, "int": 3, "bool": True}
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name == "at":
            continue
        tp = hints[field.name]
        name = getattr(tp, "__name__", "str")
        kwargs[field.name] = values.get(name, "x")
    return cls(**kwargs)


def test_the_schema_in_the_repo_is_the_one_the_events_define():
    assert json.loads(SCHEMA_FILE.read_text()) == schema(), (
        "regenerate: python -m rollup.output.event_schema > rollup/schemas/events.schema.json"
    )


def test_every_kind_of_event_validates_against_the_schema():
    validator = jsonschema.Draft202012Validator(schema())
    for cls in events.EVENT_TYPES:
        validator.validate(events.to_dict(sample(cls)))


def test_an_event_with_an_unknown_field_is_rejected_by_the_schema():
    body = events.to_dict(sample(events.Message))
    body["password"] = "x"
    validator = jsonschema.Draft202012Validator(schema())
    assert not validator.is_valid(body)


def test_json_lines_sink_writes_one_object_per_line_and_thins_progress():
    out = io.StringIO()
    sink = events.JsonLinesSink(out, progress_step=0.5)
    for i in range(11):
        sink(
            events.MigrationProgress(
                "run",
                host="h",
                vm="v",
                vm_name="vm",
                source="a",
                dest="b",
                dest_name="b",
                progress=i / 10,
                status="running",
            )
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["progress"] for line in lines] == [0.5, 1.0]


def test_a_broken_sink_is_dropped_and_the_others_still_get_events():
    bus = events.EventBus()
    got = []

    def broken(event):
        raise BrokenPipeError

    bus.subscribe(broken)
    bus.subscribe(got.append)
    bus.emit(events.Message("run", level="info", text="one"))
    bus.emit(events.Message("run", level="info", text="two"))
    assert [e.text for e in got] == ["one", "two"]


def test_log_lines_name_the_host_and_the_failure():
    out = io.StringIO()
    sink = events.LogSink(out)
    sink(
        events.ActionResult(
            "run",
            host="id",
            host_name="h2",
            state="patching",
            ok=False,
            seconds=1.0,
            error="task 'yum' failed",
        )
    )
    assert "h2" in out.getvalue() and "patching FAILED: task 'yum' failed" in out.getvalue()
