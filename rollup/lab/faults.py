"""Faults the lab injects on demand, read from a small YAML file.

Every key is optional; an empty file (or `{}`) means no faults. Hosts and VMs are named
by name label (`h2`, `web-01`) or uuid. Durations are SIMULATED seconds, like every lab
duration: they are divided by the pool's `speed` (at speed 20, `600` lasts 30 s).

    vms:
      web-01:
        fail_migration: 2      # its next 2 live migrations fail (true: all of them)
    hosts:
      h2:
        no_return: true        # after its next power-off it stays down until cleared
        return_late: 600       # comes back 600 s later than a normal reboot
        return_old_version: true  # boots its old version whatever the patch installed
        refuse_ssh: true       # its sshd refuses connections (lab/machine.py)
        fail_patch: true       # the lab patch fails on it (lab/machine.py)
        yum_busy: 2            # yum's lock held for its next 2 looks (true: until cleared)
        alarm: true            # its /metrics raise rollup_lab_host_alarm (alert rules)
        apply_in_progress: 1   # its next host.apply_updates is refused as in progress
        fail_livepatch: true   # XenServer: the livepatches apply_updates applies fail
        unsafe_to_upgrade: not_enough_space  # testSafe2Upgrade's answer (or false)
    master_api_drop:
      seconds: 120             # the master's API is unreachable for 120 s...
      when: now                # ...from now, or `next-reboot`: beyond its normal reboot

The pool takes faults at run time (`LabPool.set_faults(faults)`), so a test or a person
can edit the file to clear a fault and let the run resume: a host held down by
`no_return` comes back as soon as that fault is gone. Setting faults again restarts
`fail_migration` counts and a `when: now` API drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollup.errors import BadInput

VM_KEYS = ("fail_migration",)
HOST_KEYS = (
    "no_return",
    "return_late",
    "return_old_version",
    "refuse_ssh",
    "fail_patch",
    "yum_busy",
    "apply_in_progress",
    "fail_livepatch",
    "unsafe_to_upgrade",
    "alarm",
)
DROP_KEYS = ("seconds", "when")
TOP_KEYS = ("vms", "hosts", "master_api_drop")


@dataclass(frozen=True)
class VMFaults:
    fail_migration: int | None = 0  # failures still to come; None: every migration fails


@dataclass(frozen=True)
class HostFaults:
    no_return: bool = False
    return_late: float = 0.0  # simulated seconds added to the reboot
    return_old_version: bool = False
    refuse_ssh: bool = False
    fail_patch: bool = False
    # How many more times: yum finds its lock held (the updater plugin and an SSH
    # session's yum alike), host.apply_updates answers APPLY_UPDATES_IN_PROGRESS.
    # None: every time.
    yum_busy: int | None = 0
    apply_in_progress: int | None = 0
    fail_livepatch: bool = False  # XenServer: the livepatches host.apply_updates applies fail
    # What prepare_host_upgrade.py's testSafe2Upgrade answers instead of "true":
    # "not_enough_space" (local SR too small) or "false" (virtual disks on it).
    unsafe_to_upgrade: str = ""
    alarm: bool = False  # its monitoring (the lab's /metrics) says something is wrong


@dataclass(frozen=True)
class ApiDrop:
    seconds: float
    when: str = "now"  # "now" | "next-reboot"


@dataclass(frozen=True)
class Faults:
    vms: dict[str, VMFaults] = field(default_factory=dict)  # by VM name or uuid
    hosts: dict[str, HostFaults] = field(default_factory=dict)  # by host name or uuid
    master_api_drop: ApiDrop | None = None

    def for_host(self, name: str, host_uuid: str) -> HostFaults:
        """The faults of the host with this name or uuid (none: no faults)."""
        return next((self.hosts[k] for k in (name, host_uuid) if k in self.hosts), HostFaults())


def load_faults(path: Path | str) -> Faults:
    """Read and validate a faults file; a missing file means no faults."""
    path = Path(path)
    if not path.exists():
        return Faults()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise BadInput(f"{path}:{where} is not valid YAML; fix the syntax") from exc
    return parse_faults(data, source=str(path))


def parse_faults(data: Any, source: str = "faults") -> Faults:
    """Validate already-parsed YAML; errors name the key and the fix."""
    if data is None:
        return Faults()
    top = _mapping(data, source, "the top level", TOP_KEYS)
    vms = {
        str(name): _vm_faults(body, source, f"vms.{name}")
        for name, body in _mapping(top.get("vms") or {}, source, "vms", None).items()
    }
    hosts = {
        str(name): _host_faults(body, source, f"hosts.{name}")
        for name, body in _mapping(top.get("hosts") or {}, source, "hosts", None).items()
    }
    drop = None
    if top.get("master_api_drop") is not None:
        drop = _api_drop(top["master_api_drop"], source)
    return Faults(vms=vms, hosts=hosts, master_api_drop=drop)


def _mapping(value: Any, source: str, key: str, allowed: tuple[str, ...] | None) -> dict:
    if not isinstance(value, dict):
        raise BadInput(f"{source}: {key} must be a mapping of keys to values; indent its keys")
    if allowed is not None:
        for name in value:
            if name not in allowed:
                prefix = "" if key == "the top level" else f"{key}."
                raise BadInput(
                    f"{source}: unknown key '{prefix}{name}'; use one of {', '.join(allowed)}"
                )
    return value


def _vm_faults(body: Any, source: str, key: str) -> VMFaults:
    body = _mapping(body or {}, source, key, VM_KEYS)
    return VMFaults(fail_migration=_times(body, "fail_migration", source, key))


def _times(body: dict, name: str, source: str, key: str) -> int | None:
    """A count of times a fault strikes: true every time (None), false never (0)."""
    value = body.get(name, 0)
    if value is True:
        return None
    if value is False:
        return 0
    return _count(value, source, f"{key}.{name}")


def _host_faults(body: Any, source: str, key: str) -> HostFaults:
    body = _mapping(body or {}, source, key, HOST_KEYS)
    return HostFaults(
        no_return=_flag(body.get("no_return", False), source, f"{key}.no_return"),
        return_late=_seconds(body.get("return_late", 0), source, f"{key}.return_late"),
        return_old_version=_flag(
            body.get("return_old_version", False), source, f"{key}.return_old_version"
        ),
        refuse_ssh=_flag(body.get("refuse_ssh", False), source, f"{key}.refuse_ssh"),
        fail_patch=_flag(body.get("fail_patch", False), source, f"{key}.fail_patch"),
        yum_busy=_times(body, "yum_busy", source, key),
        apply_in_progress=_times(body, "apply_in_progress", source, key),
        fail_livepatch=_flag(body.get("fail_livepatch", False), source, f"{key}.fail_livepatch"),
        unsafe_to_upgrade=_safety(body.get("unsafe_to_upgrade", ""), f"{source}: {key}"),
        alarm=_flag(body.get("alarm", False), source, f"{key}.alarm"),
    )


def _safety(value: Any, where: str) -> str:
    if value in ("", None, False):
        return ""
    if value not in ("not_enough_space", "false"):
        raise BadInput(
            f"{where}.unsafe_to_upgrade must be not_enough_space or false, not {value!r}"
        )
    return str(value)


def _api_drop(body: Any, source: str) -> ApiDrop:
    body = _mapping(body, source, "master_api_drop", DROP_KEYS)
    if "seconds" not in body:
        raise BadInput(f"{source}: master_api_drop.seconds is missing; add e.g. 'seconds: 60'")
    seconds = _seconds(body["seconds"], source, "master_api_drop.seconds")
    when = body.get("when", "now")
    if when not in ("now", "next-reboot"):
        raise BadInput(f"{source}: master_api_drop.when is {when!r}; use 'now' or 'next-reboot'")
    return ApiDrop(seconds=seconds, when=when)


def _flag(value: Any, source: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{source}: {key} is {value!r}; use true or false")
    return value


def _count(value: Any, source: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(f"{source}: {key} is {value!r}; use a count (0, 1, 2...) or true")
    return value


def _seconds(value: Any, source: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadInput(f"{source}: {key} is {value!r}; use a number of seconds, e.g. 60")
    return float(value)
