"""Round-trips the model's frozen dataclasses through plain JSON data.

The journal keeps the plan a run executes in this form, so `rollup resume` carries out
exactly the plan that was approved, not a new one computed from a half-upgraded pool.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import time
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_data(item) for item in value]
    if isinstance(value, dict):
        return {key: to_data(item) for key, item in value.items()}
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return value


def from_data(cls: type[T], data: Any) -> T:
    return typing.cast(T, _decode(cls, data))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: _decode(hints[k], v) for k, v in data.items() if k in fields})
    if origin in (types.UnionType, typing.Union):
        if data is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _decode(non_none[0], data) if len(non_none) == 1 else data
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in data)
        return tuple(_decode(a, item) for a, item in zip(args, data, strict=True))
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if tp is time:
        hours, minutes = data.split(":")
        return time(int(hours), int(minutes))
    if tp is float and isinstance(data, int):
        return float(data)
    return data
