"""The JSON Schema of `rollup run --json`, derived from the event dataclasses.

`python -m rollup.output.event_schema > rollup/schemas/events.schema.json` regenerates the
file kept in the repository; a test fails when the two drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from rollup.run.events import EVENT_TYPES, Event

SCHEMA_ID = "https://rollup.invalid/schemas/events.schema.json"
_JSON_TYPES = {str: "string", float: "number", int: "integer", bool: "boolean"}


def _field_schema(tp: Any) -> dict[str, Any]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:  # tuple[str, ...]: a JSON array of one type
        return {"type": "array", "items": {"type": _JSON_TYPES[args[0]]}}
    if type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return {"type": [_JSON_TYPES[inner], "null"]}
    return {"type": _JSON_TYPES[tp]}


def event_schema(cls: type[Event]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {"kind": {"const": cls.kind}}
    required = ["kind"]
    for field in dataclasses.fields(cls):
        properties[field.name] = _field_schema(hints[field.name])
        required.append(field.name)
    return {
        "type": "object",
        "title": cls.__name__,
        "description": (cls.__doc__ or cls.__name__).strip().splitlines()[0],
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "rollup run --json: one event per line",
        "description": "Each line of `rollup run --json` is one of these objects, told"
        " apart by `kind`. `at` is a unix time in seconds. Additive changes only.",
        "oneOf": [{"$ref": f"#/$defs/{cls.kind}"} for cls in EVENT_TYPES],
        "$defs": {cls.kind: event_schema(cls) for cls in EVENT_TYPES},
    }


if __name__ == "__main__":
    print(json.dumps(schema(), indent=2))
