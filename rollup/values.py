"""Checkers of inventory values: each returns the value in rollup's type or raises Problem.

Shared by rollup's own variables (rollup/config/policy.py) and the ones a driver
registers (rollup/drivers/): a checker knows what is wrong with a value, the inventory
knows where it was written, and together they make the one-line error with its fix.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from rollup.errors import Problem
from rollup.model import GiB, MiB, Window
from rollup.text.quoting import PATH_LIMIT, one_line, quoted


@dataclass(frozen=True)
class Context:
    base_dir: Path  # relative paths are resolved against it
    base_name: str  # how to say base_dir in a fix: "the inventory's directory"
    hidden: bool  # the value is secret: never quote it


Check = Callable[[object, Context], object]


def shown(value: object, context: Context) -> str:
    """How an error quotes a value: escaped onto one line and short, or not at all."""
    return "(hidden)" if context.hidden else quoted(value)


def whole(minimum: int | None, maximum: int | None = None) -> Check:
    def check(value: object, context: Context) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,12}\s*", value):
            number = int(value)
        too_low = number is not None and minimum is not None and number < minimum
        too_high = number is not None and maximum is not None and number > maximum
        if number is None or too_low or too_high:
            raise Problem(
                f"must be a whole number{bounds(minimum, maximum)}, got {shown(value, context)}",
                str(minimum or 0),
            )
        return number

    return check


def bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return ""


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", re.IGNORECASE)
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600}


def seconds(value: object, context: Context) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match[1]) * _SECONDS_PER[(match[2] or "s").lower()]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise Problem(
            f"must be a positive number of seconds (or like '90s', '5m', '1h'), "
            f"got {shown(value, context)}",
            "600",
        )
    return seconds


def positive_number(value: object, context: Context) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise Problem(f"must be a positive number, got {shown(value, context)}", "1.0")
    return number


_BYTES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|[kK]B|MB|GB|TB|KiB|MiB|GiB|TiB)?(?:/s)?\s*")
_UNIT = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 1024,
    "MiB": MiB,
    "GiB": GiB,
    "TiB": 1024**4,
}


def bandwidth(value: object, context: Context) -> int:
    rate: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        rate = float(value)
    elif isinstance(value, str) and (match := _BYTES.fullmatch(value)):
        rate = float(match[1]) * _UNIT[match[2] or "B"]
    if rate is None or not math.isfinite(rate) or rate < 1:
        raise Problem(
            "must be bytes per second, a whole number or like '500MiB' or '1GB', "
            f"got {shown(value, context)}",
            '"1GiB"',
        )
    return int(rate)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%?\s*")


def percent(maximum: float) -> Check:
    """A share written as a percentage ("10%", "10 %", 10), returned as a fraction."""

    def check(value: object, context: Context) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and (found := _PERCENT.fullmatch(value)):
            number = float(found.group(1))
        if number is None or not 0 <= number <= maximum:
            raise Problem(
                f"must be a percentage from 0 to {maximum:g}, got {shown(value, context)}",
                '"10%"',
            )
        return number / 100

    return check


def whole_or(word: str, minimum: int, maximum: int) -> Check:
    """A whole number within bounds, or the one word that lets rollup choose."""
    number = whole(minimum, maximum)

    def check(value: object, context: Context) -> int | str:
        if isinstance(value, str) and value.strip().lower() == word:
            return word
        try:
            return number(value, context)
        except Problem:
            raise Problem(
                f"must be {word} or a whole number{bounds(minimum, maximum)},"
                f" got {shown(value, context)}",
                word,
            ) from None

    return check


def boolean(value: object, context: Context) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Problem(f"must be true or false, got {shown(value, context)}", "true")


def choice(*choices: str) -> Check:
    def check(value: object, context: Context) -> str:
        if isinstance(value, str) and value in choices:
            return value
        close = close_match(value, choices)
        problem = f"must be one of {', '.join(choices)}, got {shown(value, context)}"
        if close and not context.hidden:
            problem += f" (did you mean {close}?)"
        raise Problem(problem, close or choices[0])

    return check


def close_match(value: object, choices: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    found = difflib.get_close_matches(value.strip().lower(), choices, n=1, cutoff=0.6)
    return found[0] if found else None


def text(example: str) -> Check:
    def check(value: object, context: Context) -> str:
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise Problem(
                f"must be a quoted string, got the number {shown(value, context)}",
                '"..."' if context.hidden else f'"{value}"',
            )
        raise Problem(f"must be a non-empty string, got {shown(value, context)}", example)

    return check


def version(value: object, context: Context) -> str:
    # YAML reads 8.3 as a float and 8.10 as 8.1: insist on quotes instead of guessing.
    written = text('"8.3.0"')(value, context)
    assert isinstance(written, str)
    if not re.fullmatch(r"\d+(?:[.-][0-9A-Za-z]+)*", written):
        raise Problem(f"must be a version like 8.3.0, got {shown(value, context)}", '"8.3.0"')
    return written


def url(value: object, context: Context) -> str:
    example = "https://pool-master.example.org"
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            return value.strip()
    raise Problem(f"must be the pool master's http(s) URL, got {shown(value, context)}", example)


def installer_url(value: object, context: Context) -> str:
    """Where a network installer's repository is: http://, ftp:// or nfs://."""
    example = '"http://repo.example.org/xcp-ng/8.3/"'
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "ftp", "nfs") and parts.hostname:
            return value.strip()
    raise Problem(
        f"must be the installer repository's http://, ftp:// or nfs:// URL, got"
        f" {shown(value, context)}",
        example,
    )


def names(value: object, context: Context) -> tuple[str, ...]:
    """A list of names (packages, repositories): a YAML list, or one string with spaces
    or commas between them."""
    items: list[object] = []
    if isinstance(value, str):
        items = [part for part in re.split(r"[\s,]+", value) if part]
    elif isinstance(value, list | tuple):
        items = list(value)
    if items and all(isinstance(i, str) and re.fullmatch(r"[\w.+:*~-]+", i) for i in items):
        return tuple(str(i) for i in items)
    raise Problem(
        f"must be a list of names (letters, digits, . _ + - : * ~), got {shown(value, context)}",
        "[kernel, xen-hypervisor]",
    )


def notify_urls(value: object, context: Context) -> tuple[str, ...]:
    """Apprise URLs: one, or a list (their secrets are never quoted back)."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list | tuple) and items:
        urls = [str(item).strip() for item in items if isinstance(item, str)]
        if len(urls) == len(items) and all("://" in url for url in urls):
            return tuple(urls)
    raise Problem(
        "must be an Apprise URL or a list of them (scheme://...)",
        "[json://hooks.example.org/rollup, mailto://user:pass@example.org]",
    )


def existing_file(value: object, context: Context) -> str:
    written = text("path/to/file.yml")(value, context)
    assert isinstance(written, str)
    try:
        path = Path(written).expanduser()
    except RuntimeError:  # ~name of no user: no such file either, said below
        path = Path(written)
    if not path.is_absolute():
        path = context.base_dir / path
    # Normalised, but symlinks a user chose are kept as written.
    absolute = Path(os.path.normpath(path.absolute()))
    with contextlib.suppress(OSError):  # a name too long for any file system
        if absolute.is_file():
            return str(absolute)
    raise Problem(
        f"names {one_line(str(absolute), PATH_LIMIT)}, which does not exist",
        hint=f"fix the path (relative paths start at {context.base_name} "
        f"{one_line(str(context.base_dir), PATH_LIMIT)})",
    )


_CLOCK = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def window(value: object, context: Context) -> Window:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match:
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return Window(start=time(h1, m1), end=time(h2, m2))
    raise Problem(
        f'must be a daily window "HH:MM-HH:MM" with different ends, got {shown(value, context)}',
        '"22:00-04:00"',
    )


def environment(value: object, context: Context) -> dict[str, str]:
    scalar = (str, int, float, bool)
    if isinstance(value, Mapping) and all(
        isinstance(key, str)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
        and isinstance(item, scalar)
        for key, item in value.items()
    ):
        return {key: str(item) for key, item in value.items()}
    raise Problem(
        f"must map environment variable names to plain values, got {shown(value, context)}",
        "{ROLLUP_LAB_HOST: h1}",
    )


@dataclass(frozen=True)
class Variable:
    """An inventory variable: its name, whether it is set per pool or per host, its check."""

    name: str
    level: Literal["pool", "host"]
    check: Check
    secret: bool = False
