import io
import json
import logging

import jsonschema

from rollup import bundled
from rollup.output import sinks
from rollup.output.event_schema import schema
from rollup.run import events
from rollup.run.journal import Journal, JournalSink

SCHEMA_FILE = bundled.path("schemas/events.schema.json")


def sample(cls):
    values = {"str": "x", "float": 0.5, "int": 3, "bool": True, "tuple": ("x", "y")}
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


def test_every_kind_of_event_comes_back_from_json_equal_to_the_one_emitted(tmp_path):
    journal = Journal(tmp_path / "state")
    emitted = [sample(cls) for cls in events.EVENT_TYPES]
    for event in emitted:
        journal.record_event(event)
    back = [events.from_dict(body) for _, body in journal.events("x")]
    assert back == emitted
    failed = next(e for e in back if isinstance(e, events.ActionResult))
    assert failed.evidence == ("x", "y") and isinstance(failed.evidence, tuple)


def test_an_event_with_an_unknown_field_is_rejected_by_the_schema():
    body = events.to_dict(sample(events.Message))
    body["password"] = "x"
    validator = jsonschema.Draft202012Validator(schema())
    assert not validator.is_valid(body)


def test_json_lines_sink_writes_one_object_per_line_and_thins_progress():
    out = io.StringIO()
    sink = sinks.JsonLinesSink(out, progress_step=0.5)
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


def test_a_broken_sink_is_logged_once_and_the_others_still_get_events(caplog):
    bus = events.EventBus()
    got = []
    closed = io.StringIO()
    closed.close()  # a pipeline's reader went away: every write fails

    bus.subscribe(sinks.JsonLinesSink(closed))
    bus.subscribe(got.append)
    with caplog.at_level(logging.WARNING, logger="rollup"):
        bus.emit(events.Message("run", level="info", text="one"))
        bus.emit(events.Message("run", level="info", text="two"))
    assert [e.text for e in got] == ["one", "two"]
    assert [(r.name, r.levelname) for r in caplog.records] == [("rollup", "WARNING")]
    said = caplog.records[0].getMessage()
    assert said.startswith("event sink JsonLinesSink failed (ValueError: I/O operation on closed")
    assert said.endswith("): it gets no more events")
    assert bus.failure == "", "a sink the run can do without does not stop it"


def test_an_essential_sink_that_fails_is_remembered_for_the_rollout(tmp_path, caplog):
    journal = Journal(tmp_path / "state")
    bus = events.EventBus()
    got = []
    bus.subscribe(JournalSink(journal), essential=True)
    bus.subscribe(got.append)
    bus.emit(events.Message("run", level="info", text="one"))
    journal.close()  # what a vanished state directory does to it: every write fails
    with caplog.at_level(logging.WARNING, logger="rollup"):
        bus.emit(events.Message("run", level="info", text="two"))
        bus.emit(events.Message("run", level="info", text="three"))
    assert [e.text for e in got] == ["one", "two", "three"]
    assert bus.failure.startswith("event sink JournalSink failed (ProgrammingError: ")
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "the run stops at its next safe point" in caplog.records[0].getMessage()


def test_log_lines_name_the_host_and_the_failure():
    out = io.StringIO()
    sink = sinks.LogSink(out)
    sink(
        events.ActionResult(
            "run",
            host="id",
            host_name="h2",
            state="patching",
            ok=False,
            seconds=1.0,
            error="task 'yum' failed",
            evidence=tuple(f"line {i}" for i in range(1, 13)),
        )
    )
    first, *evidence = out.getvalue().splitlines()
    assert "h2" in first and first.endswith("patching FAILED: task 'yum' failed")
    # The last ten lines of the output, under the failure, marked as quoted output.
    assert [line[9:] for line in evidence] == [f"         | line {i}" for i in range(3, 13)]
