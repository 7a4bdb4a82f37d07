"""`rollup_gates`: the health checks around each host, checked where they are written.

rollup_gates:
  before_host:                                  # before a host leaves service
    - prometheus: http://prometheus.example.org:9090
      alerts: "^(HostDown|CephHealthWarning)$"  # firing alerts that block (regex)
    - http: https://status.example.org/health
      status: 200                               # default 200
      body: '"ok": *true'                       # optional regex the body must hold
  after_host:                                   # after it is back and its VMs too
    - command: /usr/local/bin/check-backups     # exits 0 to pass
  timeout: 10m                                  # a failing gate is waited on this long
  interval: 30s                                 # between two looks
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rollup.errors import Problem
from rollup.model import Gate, Gates
from rollup.values import Context, seconds, shown, url

PHASES = ("before_host", "after_host")
KEYS = (*PHASES, "timeout", "interval")
KINDS = {"prometheus": ("alerts",), "http": ("status", "body"), "command": ()}
EXAMPLE = "{before_host: [{prometheus: 'http://prom:9090', alerts: '^HostDown$'}]}"


def gates(value: object, context: Context) -> Gates:
    if not isinstance(value, Mapping):
        raise Problem(
            f"must be a mapping of {', '.join(KEYS)}, got {shown(value, context)}", EXAMPLE
        )
    unknown = [str(key) for key in value if key not in KEYS]
    if unknown:
        raise Problem(f"has an unknown key {unknown[0]!r}", hint=f"use {', '.join(KEYS)}")
    phases: dict[str, tuple[Gate, ...]] = {}
    for phase in PHASES:
        items = value.get(phase) or []
        if not isinstance(items, list):
            raise Problem(f"key {phase} must be a list of gates", EXAMPLE)
        phases[phase] = tuple(_gate(item, f"{phase}[{i}]", context) for i, item in enumerate(items))
    fields: dict[str, Any] = {}
    for key, field in (("timeout", "timeout_seconds"), ("interval", "interval_seconds")):
        if key in value:
            try:
                fields[field] = seconds(value[key], context)
            except Problem as problem:
                raise Problem(f"key {key} {problem.problem}", '"10m"') from None
    return Gates(before_host=phases["before_host"], after_host=phases["after_host"], **fields)


def _gate(item: object, where: str, context: Context) -> Gate:
    kinds = [kind for kind in KINDS if isinstance(item, Mapping) and kind in item]
    if not isinstance(item, Mapping) or len(kinds) != 1:
        raise Problem(
            f"{where} must name one of {', '.join(KINDS)}, got {shown(item, context)}", EXAMPLE
        )
    kind = kinds[0]
    allowed = (kind, *KINDS[kind])
    extra = [str(key) for key in item if key not in allowed]
    if extra:
        raise Problem(
            f"{where} has an unknown key {extra[0]!r}",
            hint=f"a {kind} gate takes {', '.join(allowed)}",
        )
    target = item[kind]
    if kind == "command":
        if not isinstance(target, str) or not target.strip():
            raise Problem(f"{where} command must be a command line", '"/usr/local/bin/check"')
        return Gate("command", target.strip())
    try:
        address = url(target, context)
    except Problem:
        raise Problem(f"{where} {kind} must be an http(s) URL, got {shown(target, context)}",
                      '"http://prometheus.example.org:9090"') from None  # fmt: skip
    match = item.get("alerts" if kind == "prometheus" else "body", "")
    if not isinstance(match, str) or not _compiles(match):
        raise Problem(
            f"{where}: {shown(match, context)} is not a regular expression", '"^HostDown$"'
        )
    status = item.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise Problem(f"{where} status must be an HTTP status, got {shown(status, context)}", "200")
    return Gate(kind, address, match, status)  # type: ignore[arg-type]


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True
