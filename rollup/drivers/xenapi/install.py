"""Installing a host's updates the way its pool does it, as Xen Orchestra does.

- XCP-ng: `host.call_plugin(host, "updater.py", "update", {"packages": ...})` runs yum on
  the host; while another yum holds the lock the plugin answers busy and the call is
  retried after a pause. Then the install time goes to the host's
  other_config["rpm_patch_installation_time"] (as XO writes it), which tells XO users and
  rollup alike that the host needs a reboot until it boots again.
- XenServer 8: `host.apply_updates(host, hash)` with the /updates hash the plan read.
  A hash the pool no longer has (UPDATEINFO_HASH_MISMATCH: updates were published since)
  is refused, not guessed at: the caller decides to re-read (policy `latest`) or to fail
  the host (policy `planned`). xapi then records what must still happen as the host's
  pending guidances.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rollup.drivers import Follow
from rollup.drivers.xenapi import tasks, updates
from rollup.drivers.xenapi.failures import describe
from rollup.drivers.xenapi.records import xapi_seconds
from rollup.drivers.xenapi.session import Session
from rollup.errors import BadInput, DriverError
from rollup.text.plurals import count
from rollup.text.units import format_duration

PATCHED_AT_KEY = "rpm_patch_installation_time"
OUTPUT_LINES = 40  # of yum's output kept as evidence


@dataclass(frozen=True)
class Installed:
    """What one install did: its output, for the journal and a failure's evidence."""

    output: tuple[str, ...] = ()


def xcp_ng_update(
    api: Session,
    ref: str,
    name: str,
    packages: Sequence[str],
    repos: Sequence[str],
    follow: Follow,
    busy_delay: float,
) -> Installed:
    """yum update through the updater plugin, all that is pending or only `packages`
    (name-version-release).

    Each call is `Async.host.call_plugin`, followed as a task: yum runs for minutes, far
    longer than one call's socket timeout (Xen Orchestra calls it async too, patching.mjs
    `_xcpUpdate`). The plugin appends `packages` to yum's command line as ONE argument,
    which yum reads as one pattern (xcp-ng-xapi-plugins updater.py `install_helper`):
    several packages are installed one call each. A busy plugin (another install or
    check holds its lock) is waited out, all of it within `follow.timeout`.
    """
    deadline = time.monotonic() + follow.timeout
    base = {"repos": ",".join(repos)} if repos else {}
    calls = [{**base, "packages": package} for package in packages] or [base]
    lines: list[str] = []
    for index, arguments in enumerate(calls, start=1):
        doing = "yum update"
        if "packages" in arguments:
            doing += f" {arguments['packages']}"
            if len(calls) > 1:
                doing += f" ({index} of {len(calls)})"

        def update(arguments: dict[str, str] = arguments, doing: str = doing) -> object:
            return _plugin_task(api, ref, name, arguments, doing, follow, deadline)

        answer = updates.while_busy(update, deadline, busy_delay, name, follow.say)
        lines += _output(str(answer), doing)
    # Xen Orchestra's mark: a host booted before this time needs a reboot. In the host's
    # own time, not ours, so a controller's clock skew cannot hide a reboot; xapi gives it
    # to the second, so the next one is surely after the install.
    installed = server_time(api, ref, name) + 1
    what = f"record the install time on {name}"
    api.call(what, "host.remove_from_other_config", ref, PATCHED_AT_KEY)
    api.call(what, "host.add_to_other_config", ref, PATCHED_AT_KEY, f"{installed:.3f}")
    return Installed(output=tuple(lines[-OUTPUT_LINES:]))


def _plugin_task(
    api: Session,
    ref: str,
    name: str,
    arguments: dict[str, str],
    doing: str,
    follow: Follow,
    deadline: float,
) -> object:
    what = f"install the updates of host {name}"
    record = tasks.run_to_end(
        api, "Async.host.call_plugin", (ref, updates.UPDATER, "update", arguments), what,
        deadline, lambda spent: follow.say(f"{doing}: {_running(spent)}"),
        f"{doing} still runs after {format_duration(follow.timeout)} (rollup_install_timeout);"
        " yum goes on on the host: let it finish, then resume, or raise"
        " rollup_install_timeout",
    )  # fmt: skip
    if record["status"] != "success":
        code, params = tasks.failure_of(record)
        raise _plugin_failure(what, code, params)
    return tasks.task_value(str(record.get("result", "")))


def _running(seconds: float) -> str:
    return f"running for {format_duration(seconds)}"


def _plugin_failure(what: str, code: str, params: tuple[str, ...]) -> DriverError:
    """updater.py's failures (xcpngutils error_wrapped): "-1" [message, "", traceback]
    for its own errors, yum's exit code ["Command ... failed with code: N",
    "stdout: '...', stderr: '...'", traceback] when yum fails."""
    if code.lstrip("-").isdigit() and params:
        evidence = tuple(
            line for line in "\n".join(params[1:2]).replace("\\n", "\n").splitlines() if line
        )
        if code == "-1":
            return DriverError(f"could not {what}: {params[0]}", code, params, evidence)
        return DriverError(
            f"could not {what}: yum update failed with exit code {code}",
            "UPDATE_FAILED",
            (code, *params),
            evidence[-OUTPUT_LINES:],
        )
    return DriverError(f"could not {what}: {describe(code, params)}", code, params)


def server_time(api: Session, ref: str, name: str) -> float:
    """The host's clock (host.get_servertime), as seconds since the epoch."""
    value = api.call(f"read the clock of host {name}", "host.get_servertime", ref)
    seconds = xapi_seconds(value)
    if seconds is None:
        raise DriverError(f"host {name} answered its time as {value!r}, not a date", "BAD_TIME")
    return seconds


def _output(answer: str, doing: str) -> list[str]:
    """The updater's answer: {stdout, stderr, command, returncode} (older: {exit, ...})."""
    try:
        result = json.loads(answer)
    except ValueError:
        return answer.splitlines()[-OUTPUT_LINES:]
    if not isinstance(result, dict):
        return []
    code = result.get("returncode", result.get("exit", 0))
    lines = f"{result.get('stdout', '')}\n{result.get('stderr', '')}".strip().splitlines()
    if code not in (0, "0", None):
        raise DriverError(
            f"{doing} failed with exit code {code}", "UPDATE_FAILED", (str(code),), tuple(lines)
        )
    return lines


def sync_updates(api: Session, pool_ref: str, timeout: float) -> str:
    """pool.sync_updates, followed as a task (minutes: the pool's mirror fetches what was
    published since its last sync); the new updateinfo hash."""
    what = "sync the pool's update repositories"
    deadline = time.monotonic() + timeout
    record = tasks.run_to_end(
        api, "Async.pool.sync_updates", (pool_ref, False, "", ""), what, deadline,
        lambda spent: None, f"still running after {format_duration(timeout)}",
    )  # fmt: skip
    if record["status"] != "success":
        code, params = tasks.failure_of(record)
        if code == "NO_REPOSITORY_ENABLED":
            raise BadInput(
                "the pool has no update repository enabled, so rollup_sync cannot sync"
                " it: configure the pool's repositories (XenCenter: Configure Updates),"
                " then plan again"
            )
        raise DriverError(f"could not {what}: {describe(code, params)}", code, params)
    return str(tasks.task_value(str(record.get("result", ""))))


def xenserver_apply(
    api: Session, ref: str, name: str, hash_: str, follow: Follow, busy_delay: float
) -> Installed:
    """host.apply_updates with the plan's hash, followed as a task (minutes). Another
    apply or a sync holds the pool (APPLY_UPDATES_IN_PROGRESS, SYNC_UPDATES_IN_PROGRESS:
    xen-api xapi_pool_helpers.ml's blocking pool operations): waited out, said, within
    `follow.timeout`. Its livepatch failures come back as output."""
    deadline = time.monotonic() + follow.timeout

    def apply() -> Installed:
        return _apply(api, ref, name, hash_, follow, deadline)

    done: Installed = updates.while_busy(
        apply, deadline, busy_delay, name, follow.say, updates.pool_busy
    )
    return done


def _apply(
    api: Session, ref: str, name: str, hash_: str, follow: Follow, deadline: float
) -> Installed:
    what = f"apply the updates to host {name}"
    record = tasks.run_to_end(
        api, "Async.host.apply_updates", (ref, hash_), what, deadline,
        lambda spent: follow.say(f"apply_updates: {_running(spent)}"),
        f"still running after {format_duration(follow.timeout)} (rollup_install_timeout);"
        " it goes on in the pool: let it finish, then resume, or raise"
        " rollup_install_timeout",
    )  # fmt: skip
    if record["status"] != "success":
        code, params = tasks.failure_of(record)
        raise DriverError(f"could not {what}: {_explain(code, params)}", code, params)
    failures = livepatch_failures(str(record.get("result", "")))
    if failures:
        note = f"{count(len(failures), 'livepatch')} failed: the host reboots instead"
        return Installed(output=(note, *failures))
    return Installed()


def _explain(code: str, params: tuple[str, ...]) -> str:
    reasons = {
        "UPDATEINFO_HASH_MISMATCH": "updates were published since the plan read them",
        "APPLY_UPDATES_IN_PROGRESS": "another update of the pool is in progress",
        "HOST_EVACUATION_IS_REQUIRED": "VMs are still running on it",
        "HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY": "an earlier update's guidance is pending",
        "HA_IS_ENABLED": "HA is on",
    }
    reason = reasons.get(code)
    return f"{code} ({reason})" if reason else " ".join((code, *params))


def livepatch_failures(result: str) -> tuple[str, ...]:
    """apply_updates answers [["APPLY_LIVEPATCH_FAILED", livepatch], ...] (xen-api
    repository.ml apply_updates'); "" or [] for none. Each failed livepatch, named."""
    value = tasks.task_value(result)
    if not isinstance(value, list):
        return (str(value)[:500],) if str(value).strip() else ()
    return tuple(
        " ".join(str(part) for part in item)[:500] if isinstance(item, list) else str(item)
        for item in value
    )


UPGRADE_PLUGIN = "prepare_host_upgrade.py"
# The plugin's reasons (XENAPI_PLUGIN_FAILURE [fn, exception, REASON]), in words.
INSTALLER_REASONS = {
    "MISSING_URL": "no installer URL was given",
    "INVALID_URL": "is not an installer repository the host can read",
    "INVALID_VER": "holds an older release than the host runs",
    "ERROR_PREPARING_HOST": "the host could not be set to boot the installer",
}
SAFE_TO_UPGRADE = {
    "false": "its local storage holds virtual disks",
    "not_enough_space": "its local storage has not enough free space for the upgrade",
}


def installer_problem(api: Session, ref: str, name: str, url: str) -> str:
    """Why the host cannot be upgraded from `url` (testUrl, testSafe2Upgrade), or ""."""

    def plugin(what: str, fn: str, args: dict[str, str]) -> str:
        return str(api.call(what, "host.call_plugin", ref, UPGRADE_PLUGIN, fn, args))

    try:
        plugin(f"test the installer at {url} from host {name}", "testUrl", {"url": url})
        safe = plugin(f"ask host {name} whether it is safe to upgrade", "testSafe2Upgrade", {})
    except DriverError as error:
        return _plugin_reason(error, url)
    return "" if safe == "true" else SAFE_TO_UPGRADE.get(safe, f"testSafe2Upgrade said {safe}")


def prepare_upgrade(api: Session, ref: str, name: str, url: str) -> None:
    """Set the host to boot the network installer at its next reboot (the plugin's main)."""
    try:
        what = f"set host {name} to boot the installer"
        api.call(what, "host.call_plugin", ref, UPGRADE_PLUGIN, "main", {"url": url},
                 idempotent=False)  # fmt: skip
    except DriverError as error:
        raise DriverError(
            f"could not set host {name} to boot the installer: {_plugin_reason(error, url)}",
            error.code,
            error.params,
        ) from None


def _plugin_reason(error: DriverError, url: str) -> str:
    if error.code == "XENAPI_MISSING_PLUGIN":
        return f"the host has no {UPGRADE_PLUGIN} plugin (install the host-upgrade-plugin)"
    if error.code == "XENAPI_PLUGIN_FAILURE" and len(error.params) >= 3:
        reason = error.params[2]
        words = INSTALLER_REASONS.get(reason)
        return f"{url} {words} ({reason})" if words else reason
    return error.message
