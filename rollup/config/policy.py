"""The rollup_* variables: their names, what each accepts, and the Policy they build.

Inventory group variables and command-line flags go through the same checks, so a value
means the same wherever it is written. A check either returns the value in rollup's own
type or raises `BadInput` with one line that names where the value came from (file and
group or host, or the flag), the variable, and how to fix it. Values of secret variables
and of anything that came out of a vault are never quoted back.
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

from rollup import bundled
from rollup.errors import BadInput, Problem
from rollup.lab import LabSpec, LabSsh
from rollup.model import GiB, MiB, Policy, Window
from rollup.text.quoting import PATH_LIMIT, one_line, quoted

KNOWN_DRIVERS = ("xenapi", "libvirt")  # kept here, not from the registry: no driver imports
# Drivers that reach a pool through one API (rollup_api_url); libvirt reaches each host.
API_DRIVERS = ("xenapi",)


@dataclass(frozen=True)
class Origin:
    """Where a value was written: an inventory group or host, or a command-line flag."""

    source: str  # inventory path as the user gave it
    place: str = ""  # "group pool_a", "host h1", or "" for the inventory as a whole
    flag: str | None = None  # "--max-parallel-hosts" when the value came from a flag

    def label(self, variable: str) -> str:
        return self.flag or variable

    def fail(self, variable: str, problem: str, fix: str) -> BadInput:
        if self.flag:
            return BadInput(f"{self.flag} {problem}; {fix}")
        where = ": ".join(one_line(part) for part in (self.source, self.place) if part)
        return BadInput(f"{where}: {one_line(variable)} {problem}; {fix}")


@dataclass(frozen=True)
class Context:
    base_dir: Path  # relative paths are resolved against it
    base_name: str  # how to say base_dir in a fix: "the inventory's directory"
    hidden: bool  # the value is secret: never quote it


Check = Callable[[object, Context], object]


def shown(value: object, context: Context) -> str:
    """How an error quotes a value: escaped onto one line and short, or not at all."""
    return "(hidden)" if context.hidden else quoted(value)


def _whole(minimum: int | None, maximum: int | None = None) -> Check:
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
                f"must be a whole number{_bounds(minimum, maximum)}, got {shown(value, context)}",
                str(minimum or 0),
            )
        return number

    return check


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return ""


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", re.IGNORECASE)
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600}


def _seconds(value: object, context: Context) -> float:
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


def _positive_number(value: object, context: Context) -> float:
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


def _bandwidth(value: object, context: Context) -> int:
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


def _boolean(value: object, context: Context) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Problem(f"must be true or false, got {shown(value, context)}", "true")


def _choice(*choices: str) -> Check:
    def check(value: object, context: Context) -> str:
        if isinstance(value, str) and value in choices:
            return value
        close = _close(value, choices)
        problem = f"must be one of {', '.join(choices)}, got {shown(value, context)}"
        if close and not context.hidden:
            problem += f" (did you mean {close}?)"
        raise Problem(problem, close or choices[0])

    return check


def _close(value: object, choices: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    found = difflib.get_close_matches(value.strip().lower(), choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _text(example: str) -> Check:
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


def _version(value: object, context: Context) -> str:
    # YAML reads 8.3 as a float and 8.10 as 8.1: insist on quotes instead of guessing.
    text = _text('"8.3.0"')(value, context)
    assert isinstance(text, str)
    if not re.fullmatch(r"\d+(?:[.-][0-9A-Za-z]+)*", text):
        raise Problem(f"must be a version like 8.3.0, got {shown(value, context)}", '"8.3.0"')
    return text


def _url(value: object, context: Context) -> str:
    example = "https://pool-master.example.org"
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            return value.strip()
    raise Problem(f"must be the pool master's http(s) URL, got {shown(value, context)}", example)


def _libvirt_uri(value: object, context: Context) -> str:
    example = "qemu+ssh://root@kvm1.example.org/system"
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme.split("+")[0] == "qemu" and parts.path in ("/system", "/session"):
            return value.strip()
    raise Problem(f"must be a QEMU libvirt URI, got {shown(value, context)}", example)


def _driver(value: object, context: Context) -> str:
    return str(_choice(*KNOWN_DRIVERS)(value, context))


def _existing_file(value: object, context: Context) -> str:
    text = _text("path/to/file.yml")(value, context)
    assert isinstance(text, str)
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~name of no user: no such file either, said below
        path = Path(text)
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


def _window(value: object, context: Context) -> Window:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match:
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return Window(start=time(h1, m1), end=time(h2, m2))
    raise Problem(
        f'must be a daily window "HH:MM-HH:MM" with different ends, got {shown(value, context)}',
        '"22:00-04:00"',
    )


def _environment(value: object, context: Context) -> dict[str, str]:
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


_LAB_FIELDS: dict[str, Check] = {
    "hosts": _whole(1, 250),
    "vms": _whole(0, 10_000),
    "seed": _whole(None),
    "speed": _positive_number,
    "ssh": lambda value, context: _lab_ssh(value, context),
    "faults": _existing_file,
}


def _lab_ssh(value: object, context: Context) -> LabSsh:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _boolean(value, context)
    except Problem:
        raise Problem(f"must be auto, true or false, got {shown(value, context)}", "auto") from None


def _lab(value: object, context: Context) -> LabSpec:
    if value is None:
        return LabSpec()
    if not isinstance(value, Mapping):
        raise Problem(
            f"must be a mapping of {', '.join(_LAB_FIELDS)}, got {shown(value, context)}",
            "{hosts: 4, vms: 24, seed: 1}",
        )
    fields: dict[str, object] = {}
    for key, item in value.items():
        if key not in _LAB_FIELDS:
            close = _close(key, tuple(_LAB_FIELDS))
            guess = f"did you mean {close}? " if close else ""
            raise Problem(
                f"has an unknown key {quoted(key)}",
                hint=f"{guess}known keys: {', '.join(_LAB_FIELDS)}",
            )
        try:
            fields[str(key)] = _LAB_FIELDS[key](item, context)
        except Problem as problem:
            raise Problem(
                f"key {key} {problem.problem}",
                hint=problem.hint or f"e.g. {{{key}: {problem.example}}}".replace('"', ""),
            ) from None
    return LabSpec(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Variable:
    name: str
    level: Literal["pool", "host"]
    check: Check
    secret: bool = False


_VARIABLES = (
    Variable("rollup_driver", "pool", _driver),
    Variable("rollup_api_url", "pool", _url),
    Variable("rollup_api_user", "pool", _text("root")),
    Variable("rollup_api_password", "pool", _text("..."), secret=True),
    Variable("rollup_verify_tls", "pool", _boolean),
    Variable("rollup_ca_file", "pool", _existing_file),
    Variable("rollup_lab", "pool", _lab),
    Variable("rollup_target_version", "pool", _version),
    Variable("rollup_strategy", "pool", _choice("return", "upgraded-first")),
    Variable("rollup_order", "pool", _choice("inventory", "least-loaded")),
    Variable("rollup_max_parallel_hosts", "pool", _whole(1, 1000)),
    Variable("rollup_parallel_migrations", "pool", _whole(1, 1000)),
    Variable("rollup_unmovable", "pool", _choice("fail", "skip-host", "shutdown-restart")),
    Variable("rollup_ha", "pool", _choice("disable-and-restore", "refuse")),
    Variable("rollup_playbook", "pool", _existing_file),
    Variable("rollup_pre_host_playbook", "pool", _existing_file),
    Variable("rollup_post_host_playbook", "pool", _existing_file),
    Variable("rollup_reboot", "pool", _choice("always", "if-required")),
    Variable("rollup_canary", "pool", _whole(0, 1000)),
    Variable("rollup_on_failure", "pool", _choice("pause", "abort", "continue")),
    Variable("rollup_window", "pool", _window),
    Variable("rollup_migration_bandwidth", "pool", _bandwidth),
    Variable("rollup_patch_seconds", "pool", _seconds),
    Variable("rollup_reboot_seconds", "pool", _seconds),
    Variable("rollup_host_timeout", "pool", _seconds),
    Variable("rollup_host_name", "host", _text("xcp-host-1")),
    Variable("rollup_check_host_keys", "host", _boolean),
    Variable("rollup_lab_env", "host", _environment),
    # libvirt pools: how to reach each host's libvirtd (default qemu+ssh://<ansible_host>/system)
    # and whether VMs with local disks may move by copying them (block migration).
    Variable("rollup_libvirt_uri", "host", _libvirt_uri),
    Variable("rollup_libvirt_block_migration", "host", _boolean),
)

VARIABLES: Mapping[str, Variable] = {variable.name: variable for variable in _VARIABLES}
POOL_VARIABLES = tuple(v.name for v in _VARIABLES if v.level == "pool")
HOST_VARIABLES = tuple(v.name for v in _VARIABLES if v.level == "host")

# Which Policy field each variable sets; the rest build the connection or the lab.
_POLICY_FIELDS = {
    "rollup_target_version": "target_version",
    "rollup_strategy": "strategy",
    "rollup_order": "order",
    "rollup_max_parallel_hosts": "max_parallel_hosts",
    "rollup_parallel_migrations": "parallel_migrations",
    "rollup_unmovable": "unmovable",
    "rollup_ha": "ha",
    "rollup_playbook": "playbook",
    "rollup_pre_host_playbook": "pre_host_playbook",
    "rollup_post_host_playbook": "post_host_playbook",
    "rollup_reboot": "reboot",
    "rollup_canary": "canary",
    "rollup_on_failure": "on_failure",
    "rollup_window": "window",
    "rollup_migration_bandwidth": "migration_bandwidth",
    "rollup_patch_seconds": "patch_seconds",
    "rollup_reboot_seconds": "reboot_seconds",
    "rollup_host_timeout": "host_timeout_seconds",
}


def is_secret_variable(name: str) -> bool:
    """A rollup variable that holds a secret (the pool's API password)."""
    variable = VARIABLES.get(name)
    return variable is not None and variable.secret


def is_secret(name: str) -> bool:
    variable = VARIABLES.get(name)
    if variable is not None:
        return variable.secret
    return any(word in name.lower() for word in ("pass", "secret", "token", "key"))


def flag_for(name: str, flag_names: Mapping[str, str] | None = None) -> str:
    """The command-line flag that overrides `name`: --max-parallel-hosts for rollup_max_..."""
    if flag_names and name in flag_names:
        return flag_names[name]
    return "--" + name.removeprefix("rollup_").replace("_", "-")


def unknown(name: str, origin: Origin) -> BadInput:
    """The error for a rollup_* name nobody knows, with the nearest known name."""
    # Compared without the shared prefix, which would make every name look close.
    stems = {known.removeprefix("rollup_"): known for known in VARIABLES}
    close = difflib.get_close_matches(name.removeprefix("rollup_"), stems, n=1, cutoff=0.7)
    if close:
        fix = f"did you mean {stems[close[0]]}?"
    else:
        fix = "rollup_* names are rollup's own: rename it or see inventories/example-xcpng.yml"
    return origin.fail(name, "is not a variable rollup knows", fix)


def check(
    name: str,
    value: object,
    origin: Origin,
    base_dir: Path,
    *,
    hidden: bool = False,
) -> object:
    """`value` in rollup's type, or BadInput naming origin, variable and fix."""
    variable = VARIABLES.get(name)
    if variable is None:
        raise unknown(name, origin)
    base_name = "the current directory" if origin.flag else "the inventory's directory"
    context = Context(base_dir, base_name, hidden or variable.secret)
    try:
        return variable.check(value, context)
    except Problem as problem:
        label = origin.label(name)
        if problem.hint:
            fix = problem.hint
        elif origin.flag:
            fix = f"e.g. {label} {problem.example.strip(chr(34))}"
        else:
            fix = f"e.g. {label}: {problem.example}"
        raise origin.fail(name, problem.problem, fix) from None


def build_policy(checked: Mapping[str, object], host_order: tuple[str, ...]) -> Policy:
    """A Policy from checked values; variables not given keep Policy's defaults."""
    fields = {field: checked[name] for name, field in _POLICY_FIELDS.items() if name in checked}
    if "rollup_lab" in checked and "rollup_playbook" not in checked:
        # A lab pool's hosts take the lab's own patch, shipped beside rollup's.
        fields["playbook"] = bundled.playbook("lab-patch.yml")
    return Policy(host_order=host_order, **fields)  # type: ignore[arg-type]
