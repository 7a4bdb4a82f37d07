"""xapi's query expressions, for `<class>.get_all_records_where(expr)`.

    field "power_state" = "Running" and not (field "is_control_domain" = "true")

The grammar of xapi's db_filter: `true`, `false`, `not e`, `e and e`, `e or e`, `( e )`,
`v = v`, `v <> v`, where a value `v` is `field "name"` or a `"literal"`; `or` binds
loosest. Fields compare as xapi stores them: strings, booleans as "true"/"false",
numbers in decimal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rollup.lab.xapi.failure import XapiFailure

Predicate = Callable[[dict[str, Any]], bool]
_TOKEN = re.compile(r'\s*(?:(\(|\)|=|<>)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def compile_where(expression: str) -> Predicate:
    tokens = _tokens(expression)
    predicate, rest = _or(tokens, expression)
    if rest:
        raise _invalid(expression)
    return predicate


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while expression[at:].strip():
        match = _TOKEN.match(expression, at)
        if match is None:
            raise _invalid(expression)
        symbol, string, word = match.groups()
        if string is not None:
            tokens.append(("string", re.sub(r"\\(.)", r"\1", string)))
        else:
            tokens.append(("op", symbol or word.lower()))
        at = match.end()
    return tokens


def _or(tokens: list[tuple[str, str]], source: str) -> tuple[Predicate, list]:
    left, tokens = _and(tokens, source)
    while tokens and tokens[0] == ("op", "or"):
        right, tokens = _and(tokens[1:], source)
        left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
    return left, tokens


def _and(tokens: list[tuple[str, str]], source: str) -> tuple[Predicate, list]:
    left, tokens = _not(tokens, source)
    while tokens and tokens[0] == ("op", "and"):
        right, tokens = _not(tokens[1:], source)
        left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
    return left, tokens


def _not(tokens: list[tuple[str, str]], source: str) -> tuple[Predicate, list]:
    if not tokens:
        raise _invalid(source)
    head = tokens[0]
    if head == ("op", "not"):
        inner, rest = _not(tokens[1:], source)
        return (lambda r: not inner(r)), rest
    if head in (("op", "true"), ("op", "false")):
        value = head[1] == "true"
        return (lambda r: value), tokens[1:]
    if head == ("op", "("):
        inner, rest = _or(tokens[1:], source)
        if not rest or rest[0] != ("op", ")"):
            raise _invalid(source)
        return inner, rest[1:]
    left, rest = _value(tokens, source)
    if not rest or rest[0] not in (("op", "="), ("op", "<>")):
        raise _invalid(source)
    right, rest2 = _value(rest[1:], source)
    if rest[0][1] == "=":
        return (lambda r: left(r) == right(r)), rest2
    return (lambda r: left(r) != right(r)), rest2


def _value(tokens: list[tuple[str, str]], source: str) -> tuple[Callable, list]:
    if tokens and tokens[0][0] == "string":
        literal = tokens[0][1]
        return (lambda r: literal), tokens[1:]
    if len(tokens) > 1 and tokens[0] == ("op", "field") and tokens[1][0] == "string":
        name = tokens[1][1]
        return (lambda r: _stored(r.get(name))), tokens[2:]
    raise _invalid(source)


def _stored(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None  # maps and sets: never equal to a literal here


def _invalid(expression: str) -> XapiFailure:
    return XapiFailure("INTERNAL_ERROR", f"invalid query expression: {expression}")
