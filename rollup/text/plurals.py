"""Counted nouns that read right for one and for many: "1 host", "3 hosts", "1 batch".

Every user-facing count goes through here, so no text says "1 hosts" or falls back on
"host(s)".
"""

from __future__ import annotations

# Endings that take "es": batch → batches, pass → passes, box → boxes.
_ES_ENDINGS = ("s", "x", "z", "ch", "sh")


def noun(n: int, singular: str, plural: str | None = None) -> str:
    """The word alone, for `n` of it: noun(1, "check") is "check", noun(0, "check") "checks"."""
    if n == 1:
        return singular
    if plural is not None:
        return plural
    if singular.endswith(_ES_ENDINGS):
        return singular + "es"
    if singular.endswith("y") and singular[-2:-1] not in ("", *"aeiou"):
        return singular[:-1] + "ies"
    return singular + "s"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`n` and the word: "1 host", "2 hosts", "0 VMs", "1 batch", "3 batches"."""
    return f"{n} {noun(n, singular, plural)}"


def verb(n: int, singular: str, plural: str) -> str:
    """The verb agreeing with `n` things: verb(1, "is", "are") is "is"."""
    return singular if n == 1 else plural
