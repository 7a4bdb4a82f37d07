"""What each host of a XenServer / XCP-ng pool has pending, as its own tools say it.

- XCP-ng: `host.call_plugin(host, "updater.py", "check_update", {})` on each host answers
  a JSON list of packages. It runs yum on the host (seconds each), so hosts are asked in
  parallel; while another yum holds the lock the plugin answers busy ("-1", "The updater
  plugin is busy ..."), and the ask is retried after a pause, as Xen Orchestra does.
  Installing anything is followed by a reboot (XO's rule: a host booted before the last
  install needs one), so pending packages come with the guidance `reboot_host`.
- XenServer 8: the master's GET /updates answers every host at once: its advisories,
  RPMs and the guidance installing them demands, and the hash `host.apply_updates`
  must be given back.
- Any other pool (Citrix Hypervisor 8.2 and older): nothing can be asked; pending
  stays unknown and only a target version says whether a host needs work.
Pure parsing lives here too, tested from recorded answers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from rollup.drivers import PoolUpdates
from rollup.drivers.xenapi.session import Session
from rollup.errors import BadInput, DriverError
from rollup.model import Pending, Update
from rollup.text.units import format_duration

log = logging.getLogger("rollup.drivers.xenapi")

UPDATER = "updater.py"
UPDATES_PATH = "/updates"
BUSY = re.compile(r"\bbusy\b|already in progress", re.IGNORECASE)
POOL_BUSY = {
    "APPLY_UPDATES_IN_PROGRESS": "waiting for the pool's apply_updates in progress to end",
    "SYNC_UPDATES_IN_PROGRESS": "waiting for the pool's sync_updates in progress to end",
}
# /updates names guidances in CamelCase; the API's fields, and rollup, in snake_case.
GUIDANCE_NAMES = {
    "RebootHost": "reboot_host",
    "RebootHostOnLivePatchFailure": "reboot_host_on_livepatch_failure",
    "RebootHostOnKernelLivePatchFailure": "reboot_host_on_kernel_livepatch_failure",
    "RebootHostOnXenLivePatchFailure": "reboot_host_on_xen_livepatch_failure",
    "RestartToolstack": "restart_toolstack",
    "RestartDeviceModel": "restart_device_model",
    "RestartVM": "restart_vm",
    "EvacuateHost": "evacuate_host",
}

Record = Mapping[str, Any]


def parse_check_update(text: str) -> Pending:
    """updater.py's check_update answer: a JSON list of packages, `[]` when up to date."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise DriverError(f"updater.py check_update answered no JSON list ({exc})") from None
    if isinstance(items, dict) and "error" in items:
        raise DriverError(f"updater.py check_update failed: {items['error']}")
    if not isinstance(items, list):
        raise DriverError("updater.py check_update answered no JSON list")
    updates = tuple(
        Update(
            name=str(item.get("name", "")),
            version=str(item.get("version", "")),
            release=str(item.get("release", "")),
            summary=str(item.get("description") or ""),
            size=_int(item.get("size")),
        )
        for item in items
        if isinstance(item, dict)
    )
    return Pending(updates=updates, guidance=("reboot_host",) if updates else ())


def parse_updates(data: Any, host_refs: Mapping[str, str]) -> PoolUpdates:
    """XenServer's /updates answer, for the hosts in `host_refs` (ref → host id)."""
    if not isinstance(data, dict) or "hosts" not in data:
        raise DriverError("the pool's /updates answer has no hosts list")
    advisories = {str(u.get("id")): u for u in data.get("updates", ()) if isinstance(u, dict)}
    found: dict[str, Pending] = {}
    for entry in data["hosts"]:
        ref = str(entry.get("ref", ""))
        if ref not in host_refs:
            continue
        guidance = entry.get("guidance") or {}
        if not guidance and "recommended-guidance" in entry:
            # xapi before December 2023: one list, what is now mandatory.
            guidance = {"mandatory": entry["recommended-guidance"]}
        found[host_refs[ref]] = Pending(
            updates=tuple(_advisory(str(a), advisories.get(str(a), {})) for a in entry["updates"]),
            guidance=_guidances(guidance.get("mandatory", ())),
            recommended=_guidances(guidance.get("recommended", ())),
            packages=tuple(str(rpm) for rpm in entry.get("RPMS", ())),
        )
    return PoolUpdates(hosts=found, hash=str(data.get("hash", "")))


def _advisory(advisory: str, record: Record) -> Update:
    return Update(
        name=advisory,
        summary=str(record.get("summary", "")),
        severity=str(record.get("severity", "")),
        livepatch=bool(record.get("livepatches")),
    )


def _guidances(names: Any) -> tuple[str, ...]:
    return tuple(GUIDANCE_NAMES.get(str(name), str(name)) for name in names or ())


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def read_updates(api: Session, wait: float) -> Any:
    """The master's GET /updates. It waits while an apply or a sync of the pool runs
    (xen-api xapi_pool.ml get_updates_handler: a waiting pool operation), so it may take
    minutes; 404 means no update repository is enabled (NO_REPOSITORY_ENABLED)."""
    try:
        return api.get_json("read the pool's pending updates", UPDATES_PATH, socket_timeout=wait)
    except DriverError as error:
        if error.code != "HTTP_404":
            raise
        raise BadInput(
            "the pool has no update repository enabled (its /updates answered 404,"
            " NO_REPOSITORY_ENABLED): configure and sync the pool's repositories (XenCenter:"
            " Configure Updates; xe repository-introduce, pool-set-repositories,"
            " pool-sync-updates), then plan again"
        ) from None


def check_update(
    api: Session,
    ref: str,
    name: str,
    repos: tuple[str, ...],
    busy_seconds: float,
    delay: float,
) -> Pending:
    """One XCP-ng host's pending packages from the repositories the install will use
    (updater.py enables its defaults and those of `repos` the host has enabled), waiting
    out a busy updater plugin: an install holds its lock for minutes."""
    deadline = time.monotonic() + busy_seconds
    arguments = {"repos": ",".join(repos)} if repos else {}

    def ask() -> Any:
        what = f"ask host {name} for its pending updates"
        return api.call(what, "host.call_plugin", ref, UPDATER, "check_update", arguments)

    def say(text: str) -> None:
        log.warning("%s; waiting for it (up to %s)", text, format_duration(busy_seconds))

    return parse_check_update(str(while_busy(ask, deadline, delay, name, say)))


def while_busy(
    call: Callable[[], Any],
    deadline: float,
    delay: float,
    name: str,
    say: Callable[[str], None] | None = None,
    busy: Callable[[DriverError], str] | None = None,
) -> Any:
    """`call`, again after `delay` for as long as it is refused as busy (`busy` says why,
    "" when it is not busy; by default the updater plugin's lock); `say` hears once per
    wait what the host or pool is busy with."""
    busy = busy or plugin_busy
    said = ""
    while True:
        try:
            return call()
        except DriverError as error:
            reason = busy(error)
            if not reason or time.monotonic() + delay > deadline:
                raise
            why = f"host {name}: {reason}"
            if say is not None and why != said:
                say(why)
                said = why
        time.sleep(delay)


def plugin_busy(error: DriverError) -> str:
    """The updater plugin's lock is held (xcp-ng-xapi-plugins updater.py OperationLocker):
    "-1" with "The updater plugin is busy (current operation: ...)" or, to a second
    update, "Update already in progress"; its message, else ""."""
    if error.code == "-1" and any(BUSY.search(p) for p in error.params[:1]):
        return error.params[0]
    return ""


def pool_busy(error: DriverError) -> str:
    """Another blocking pool operation holds the pool (xen-api xapi_pool_helpers.ml):
    an apply_updates or a sync_updates."""
    return POOL_BUSY.get(error.code, "")
