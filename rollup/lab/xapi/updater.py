"""XCP-ng's `updater.py` host plugin on a lab host, as the plugin's own code behaves.

Source: xcp-ng/xcp-ng-xapi-plugins `SOURCES/etc/xapi.d/plugins/updater.py` (its
`OperationLocker`, `install_helper`, `build_repo_list`, `check_update`, `update`) and
`xcpngutils/__init__.py` (`error_wrapped`, `run_command`); xapi's
`ocaml/xapi/xapi_plugins.ml` hands a plugin's failure to the caller as the plugin raised
it (code, params).

- `check_update {repos?}` answers a JSON list of the pending packages, `[]` when up to
  date. It reads yum's metadata, which takes a few seconds.
- `update {packages?, repos?}` runs `yum update --disablerepo=* --enablerepo=R -y [P]`:
  R is xcp-ng-base, xcp-ng-updates, xcp-ng-linstor and the `repos` named, each kept only
  if the host's yum config has it enabled (others are dropped without a word), and
  `packages` is appended as ONE argument: yum reads it as one package pattern, so
  "a-1-2 b-3-4" matches nothing ("No Match for argument"), installs nothing and exits 0.
  It takes minutes (downloads, then the RPM transaction): a caller follows it as a task
  (`Async.host.call_plugin`), or loses the answer to its socket timeout while yum runs.
- The plugin's own operation lock (a file in /var/lib/xcp-ng-xapi-plugins/ holding the
  current operation): `check_update` finds it held and fails at once, "The updater plugin
  is busy (current operation: update)"; `update` fails at once "Update already in
  progress" when an update holds it, else waits 10 s for it, then fails busy. The lab
  keeps the lock in memory per host (LabPool.plugin_operations): it lives as long as the
  lab process, as the running yum it guards does.
- Failures come back as XenAPI failures with the plugin's code: "-1" and
  [message, "", traceback] for its own errors; yum's exit code and
  ["Command '[...]' failed with code: N", "stdout: '...', stderr: '...'", traceback] when
  yum fails (the lab's fail_patch fault). yum's own lock, held by another yum (the lab's
  yum_busy fault), is not the plugin's: yum waits for it and goes on.
- On a host with real packages (lab/dnf_host.py) `update` runs the host's yum, which is
  real dnf: the command line above, dnf's lock and cache, its words and exit codes (an
  argument matching nothing exits 1, where XCP-ng 8's yum 3 exits 0). Downloads take the
  lab mirror's time; what dnf installed then takes the transaction's lab time. A host
  with the stand-in installs as described above, in the lab's own code.
- Other functions (install, query_installed, get_proxies, set_proxies) are not served:
  UNKNOWN_XENAPI_PLUGIN_FUNCTION, as for any function a plugin lacks.
Nothing else changes on the host: the client records the install time
(other_config["rpm_patch_installation_time"], as Xen Orchestra does) and reboots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rollup.lab import packages, releases
from rollup.lab.dnf_host import ENABLED_REPOS
from rollup.lab.machine import YumRun
from rollup.lab.packages import Build, Rpmdb
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimHost
from rollup.lab.xapi.updates import install, spend

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

PLUGIN = "updater.py"
# updater.py's DEFAULT_REPOS; the lab host's yum config (lab/dnf_host.py REPOSITORIES)
# enables the first two and holds testing and candidates disabled.
DEFAULT_REPOS = ("xcp-ng-base", "xcp-ng-updates", "xcp-ng-linstor")
LOCK_WAIT = 10.0  # seconds `update` waits for the operation lock (@operationlock(timeout=10))
CHECK_SECONDS = 4.0  # yum reading its metadata for check_update
YUM_LOCK_POLL = 2.0  # yum tries its own lock again every 2 s while another yum holds it
YUM_LOCK_WAITING = "Another app is currently holding the yum lock; waiting for it to exit..."
TRACEBACK = 'Traceback (most recent call last):\n  File "/etc/xapi.d/plugins/updater.py"'


def call(pool: LabPool, host_ref: str, fn: str, args: dict[str, str]) -> str:
    host = pool.host(host_ref)
    if not releases.has_updater_plugin(pool.layout.flavor):
        raise XapiFailure("XENAPI_MISSING_PLUGIN", PLUGIN)
    if fn == "check_update":
        with _operation(pool, host, "check_update", wait=0.0):
            spend(pool, host, CHECK_SECONDS)
            with pool.lock:
                return json.dumps([_package(build) for build in pending(pool, host)])
    if fn == "update":
        with _operation(pool, host, "update", wait=LOCK_WAIT):
            return json.dumps(_update(pool, host, args))
    raise XapiFailure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)


@contextmanager
def _operation(pool: LabPool, host: SimHost, operation: str, wait: float) -> Iterator[None]:
    """Hold the host's plugin lock for `operation` (pool.plugin_operations: what each
    host's lock file says), as OperationLocker does."""
    deadline = time.monotonic() + pool.scheduler.real(wait)
    with pool.lock:
        while host.ref in pool.plugin_operations:
            current = pool.plugin_operations[host.ref]
            if operation == "update" and current == "update":
                raise XapiFailure("-1", "Update already in progress", "", TRACEBACK)
            left = deadline - time.monotonic()
            if left <= 0:
                raise XapiFailure(
                    "-1", f"The updater plugin is busy (current operation: {current})", "",
                    TRACEBACK,
                )  # fmt: skip
            pool.changed.wait(min(left, 0.5))
        pool.plugin_operations[host.ref] = operation
    try:
        yield
    finally:
        with pool.lock:
            del pool.plugin_operations[host.ref]
            pool.changed.notify_all()


def _package(build: Build) -> dict[str, Any]:
    return {
        "name": build.name,
        "version": build.version,
        "release": build.release,
        "description": build.summary,
        "changelog": None,
        "url": "",
        "size": build.size,
        "license": "GPLv2",
    }


def _update(pool: LabPool, host: SimHost, args: dict[str, str]) -> dict[str, Any]:
    named = [r.strip() for r in args.get("repos", "").split(",") if r.strip()]
    wanted = (*DEFAULT_REPOS, *named)
    repos = [repo for repo in ENABLED_REPOS if repo in wanted]
    command = ["yum", "update", "--disablerepo=*", "--enablerepo=" + ",".join(repos), "-y"]
    spec = args.get("packages", "")
    if spec:
        command.append(spec)  # one argument, whatever it holds
    before = host.machine.packages() or {}
    ran = host.machine.run_yum(command[1:])
    if ran is not None:
        return _ran(pool, host, command, before, ran)
    waited = []
    while True:
        with pool.lock:
            if host.machine.patch_fault():
                _yum_failed(command, 1, "", "Error: lab fault fail_patch is set on this host")
            # yum's own lock (another yum runs: the lab's yum_busy fault) is not the
            # plugin's: yum waits for it, saying so, and goes on.
            if host.machine.take_yum_lock():
                builds = _chosen(pool, host, spec)
                cached = host.machine.downloaded()
                break
        waited.append(YUM_LOCK_WAITING)
        spend(pool, host, YUM_LOCK_POLL)
    download = packages.download_seconds(builds, cached)
    transaction = packages.install_seconds(len(builds))
    # yum fetches what its cache lacks (what `yum --downloadonly` pre-staged is there),
    # then runs the transaction. xapi's task of the plugin call shows no progress.
    spend(pool, host, download + transaction)
    with pool.lock:
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        install(host, builds)
        host.machine.set_downloaded(host.machine.downloaded() - {b.nvr for b in builds})
    lines = [f"Updated: {b.name}.x86_64 {b.version}-{b.release}" for b in builds]
    if spec and not builds:
        lines = [f"No Match for argument: {spec}", "No packages marked for update"]
    elif not builds:
        lines = ["No packages marked for update"]
    else:
        lines.append("Complete!")
    return {
        "stdout": "\n".join(lines),
        "stderr": "\n".join(waited),
        "command": command,
        "returncode": 0,
    }


def _ran(
    pool: LabPool, host: SimHost, command: list[str], before: Rpmdb, ran: YumRun
) -> dict[str, Any]:
    """The host's real yum (dnf) ran: it fetched from the lab's mirror at the mirror's
    pace and installed; what it installed then takes the RPM transaction's lab time."""
    if ran.returncode != 0:
        _yum_failed(command, ran.returncode, ran.stdout, ran.stderr)
    after = host.machine.packages() or {}
    changed = [name for name, item in after.items() if before.get(name) != item]
    spend(pool, host, packages.install_seconds(len(changed)))
    with pool.lock:
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
    return {"stdout": ran.stdout, "stderr": ran.stderr, "command": command, "returncode": 0}


def _yum_failed(command: list[str], code: int, stdout: str, stderr: str) -> None:
    # error_wrapped turns run_command's ProcessException into Failure(str(code), ...).
    raise XapiFailure(
        str(code),
        f"Command '{command}' failed with code: {code}",
        f"stdout: '{stdout}', stderr: '{stderr}'",
        TRACEBACK,
    )


def pending(pool: LabPool, host: SimHost) -> list[Build]:
    """What the host's yum would install from the lab's repository as it is now (XCP-ng
    hosts read their yum repositories live; XenServer's pool answers from its last sync)."""
    pool.repository.reload()
    stream = packages.stream_of(host.version)
    return pool.repository.pending(stream, host.machine.packages() or {})


def _chosen(pool: LabPool, host: SimHost, spec: str) -> list[Build]:
    """What `yum update [SPEC]` installs now: every pending update when no pattern is
    given, else the one build SPEC names (a name, or name-version-release) if newer."""
    if not spec:
        return pending(pool, host)
    stream = packages.stream_of(host.version)
    build = pool.repository.update_for(stream, spec, host.machine.packages() or {})
    return [build] if build is not None else []
