"""User values echoed in messages, made safe to print on one line.

An error names what was wrong, and what was wrong can hold anything: a line break that
splits the message in two, a carriage return that overwrites it, an escape sequence that
recolours the terminal, ten thousand characters. `quoted` shows a value as Python's repr
does, short; `one_line` keeps running text as it is but escapes whatever would not print
as itself on one line.
"""

from __future__ import annotations

ELLIPSIS = "…"
QUOTED_LIMIT = 40  # enough to recognise a value, short enough to keep the fix in view
PATH_LIMIT = 200  # a path is read whole; one longer than that is no path anyone wrote


def _escaped(char: str) -> str:
    # repr's own escapes (\n, \t, \x1b, \u2028), so a message reads like the YAML a user
    # would have to write to get that value.
    return char if char.isprintable() else repr(char)[1:-1]


def one_line(text: str, limit: int | None = None) -> str:
    """`text` with every character that is not printable escaped, cut at `limit`."""
    out = "".join(_escaped(char) for char in text)
    if limit is not None and len(out) > limit:
        return out[: max(limit - 1, 0)] + ELLIPSIS
    return out


def quoted(value: object, limit: int = QUOTED_LIMIT) -> str:
    """A value as repr shows it ('a\\nb', 12, ['x']), on one line and cut at `limit`."""
    # repr of a str subclass or of any object may print raw characters: escape them too.
    return one_line(repr(value), limit)
