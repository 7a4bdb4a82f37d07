"""The rollup_* variables: their names, what each accepts, and the Policy they build.

Inventory group variables and command-line flags go through the same checks, so a value
means the same wherever it is written. A check either returns the value in rollup's own
type or raises `BadInput` with one line that names where the value came from (file and
group or host, or the flag), the variable, and how to fix it. Values of secret variables
and of anything that came out of a vault are never quoted back.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rollup import bundled
from rollup.config.gates import gates
from rollup.drivers import registry
from rollup.errors import BadInput, Problem
from rollup.lab import LabSpec, LabSsh
from rollup.model import Policy
from rollup.text.quoting import one_line, quoted
from rollup.values import (
    Check,
    Context,
    Variable,
    bandwidth,
    boolean,
    choice,
    close_match,
    environment,
    existing_file,
    installer_url,
    notify_urls,
    percent,
    positive_number,
    seconds,
    shown,
    text,
    url,
    version,
    whole,
    whole_or,
    window,
)


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


def _driver(value: object, context: Context) -> str:
    return str(choice(*registry.names())(value, context))


_LAB_FIELDS: dict[str, Check] = {
    "hosts": whole(1, 250),
    "vms": whole(0, 10_000),
    "seed": whole(None),
    "speed": positive_number,
    "ssh": lambda value, context: _lab_ssh(value, context),
    "faults": existing_file,
    "flavor": choice("xcp-ng", "xenserver", "proxmox"),
    "release": version,
    "up_to_date": boolean,
    "fill": percent(95),
}


def _lab_ssh(value: object, context: Context) -> LabSsh:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return boolean(value, context)
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
            close = close_match(key, tuple(_LAB_FIELDS))
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


_VARIABLES = (
    Variable("rollup_driver", "pool", _driver),
    Variable("rollup_api_url", "pool", url),
    Variable("rollup_api_user", "pool", text("root")),
    Variable("rollup_api_password", "pool", text("..."), secret=True),
    Variable("rollup_verify_tls", "pool", boolean),
    Variable("rollup_ca_file", "pool", existing_file),
    Variable("rollup_lab", "pool", _lab),
    Variable("rollup_target_version", "pool", version),
    Variable("rollup_strategy", "pool", choice("return", "upgraded-first")),
    Variable("rollup_order", "pool", choice("inventory", "least-loaded")),
    Variable("rollup_max_parallel_hosts", "pool", whole_or("auto", 1, 1000)),
    Variable("rollup_headroom", "pool", percent(90)),
    Variable("rollup_parallel_migrations", "pool", whole(1, 1000)),
    Variable("rollup_unmovable", "pool", choice("fail", "skip-host", "shutdown-restart")),
    Variable("rollup_ha", "pool", choice("disable-and-restore", "refuse")),
    Variable("rollup_playbook", "pool", existing_file),
    Variable("rollup_pre_host_playbook", "pool", existing_file),
    Variable("rollup_post_host_playbook", "pool", existing_file),
    Variable("rollup_reboot", "pool", choice("always", "if-required")),
    Variable("rollup_canary", "pool", whole(0, 1000)),
    Variable("rollup_on_failure", "pool", choice("pause", "abort", "continue")),
    Variable("rollup_window", "pool", window),
    Variable("rollup_migration_bandwidth", "pool", bandwidth),
    Variable("rollup_patch_seconds", "pool", seconds),
    Variable("rollup_reboot_seconds", "pool", seconds),
    Variable("rollup_host_timeout", "pool", seconds),
    Variable("rollup_update", "pool", choice("xapi", "playbook")),
    Variable("rollup_updates", "pool", choice("planned", "latest")),
    Variable("rollup_restart_vms", "pool", boolean),
    Variable("rollup_installer_url", "pool", installer_url),
    Variable("rollup_prestage", "pool", boolean),
    Variable("rollup_download_seconds", "pool", seconds),
    Variable("rollup_install_timeout", "pool", seconds),
    Variable("rollup_retries", "pool", whole(0, 10)),
    Variable("rollup_retry_delay", "pool", seconds),
    Variable("rollup_max_failed_hosts", "pool", whole(0, 10_000)),
    # Apprise URLs hold tokens and passwords: secret, kept out of the policy.
    Variable("rollup_notify", "pool", notify_urls, secret=True),
    Variable("rollup_gates", "pool", gates),
    Variable("rollup_host_name", "host", text("xcp-host-1")),
    Variable("rollup_check_host_keys", "host", boolean),
    Variable("rollup_lab_env", "host", environment),
    Variable("rollup_zone", "host", text("rack-a")),
)

OWN_VARIABLES: Mapping[str, Variable] = {variable.name: variable for variable in _VARIABLES}


def variables() -> dict[str, Variable]:
    """Every variable an inventory may set: rollup's own and each registered driver's."""
    found = dict(OWN_VARIABLES)
    for variable in registry.variables():
        found.setdefault(variable.name, variable)
    return found


def pool_variables() -> tuple[str, ...]:
    return tuple(name for name, v in variables().items() if v.level == "pool")


def host_variables() -> tuple[str, ...]:
    return tuple(name for name, v in variables().items() if v.level == "host")


# Which Policy field each variable sets; the rest build the connection or the lab.
_POLICY_FIELDS = {
    "rollup_target_version": "target_version",
    "rollup_strategy": "strategy",
    "rollup_order": "order",
    "rollup_max_parallel_hosts": "max_parallel_hosts",
    "rollup_headroom": "headroom",
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
    "rollup_update": "update",
    "rollup_updates": "updates",
    "rollup_restart_vms": "restart_vms",
    "rollup_installer_url": "installer_url",
    "rollup_prestage": "prestage",
    "rollup_download_seconds": "download_seconds",
    "rollup_install_timeout": "install_timeout_seconds",
    "rollup_retries": "retries",
    "rollup_retry_delay": "retry_delay_seconds",
    "rollup_max_failed_hosts": "max_failed_hosts",
    "rollup_gates": "gates",
}


def is_secret(name: str) -> bool:
    variable = variables().get(name)
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
    stems = {known.removeprefix("rollup_"): known for known in variables()}
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
    variable = variables().get(name)
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


def build_policy(
    checked: Mapping[str, object],
    host_order: tuple[str, ...],
    update_methods: tuple[str, ...],
    zones: tuple[tuple[str, str], ...] = (),
    playbook: str = "xcp-ng-update.yml",
) -> Policy:
    """A Policy from checked values; variables not given keep Policy's defaults.

    `update_methods`: how the pool's driver can patch hosts, its own way first. Without
    rollup_update, a pool given its own rollup_playbook is patched by it, any other by
    the driver's own way; `playbook` is the driver's (a bundled one) for a pool that
    names none.
    """
    fields = {field: checked[name] for name, field in _POLICY_FIELDS.items() if name in checked}
    if "rollup_update" not in checked:
        fields["update"] = "playbook" if "rollup_playbook" in checked else update_methods[0]
    if "rollup_playbook" not in checked:
        fields["playbook"] = bundled.playbook(playbook)
    if (
        "rollup_lab" in checked
        and "rollup_playbook" not in checked
        and playbook == "xcp-ng-update.yml"
    ):
        # A XenServer lab pool's hosts take the lab's own patch, shipped beside rollup's
        # (a Proxmox lab's apt takes the real playbook).
        fields["playbook"] = bundled.playbook("lab-patch.yml")
    return Policy(host_order=host_order, zones=zones, **fields)  # type: ignore[arg-type]
