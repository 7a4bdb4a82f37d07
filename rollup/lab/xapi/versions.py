"""What a lab host runs, and xapi's rolling-upgrade mode that follows from it.

What runs is not what is installed: xapi's version changes when its toolstack starts,
Xen's when the host boots (lifecycle.py calls `read_running` then). xapi keys its
rolling-upgrade mode on the platform version and xapi's major.minor of every host
against the master's (xen-api helpers.ml Checks.RPU, `pool_has_different_host_platform_
versions`), and its db_gc thread sets or clears pool.other_config
rolling_upgrade_in_progress every 30 s (db_gc.ml, db_GC_TIMER): a pool leaves the mode
up to 30 s after its last host caught up. What is refused meanwhile is placement.py's
(migrations to lower versions, starts on older hosts) and pool.set_ha's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.lab.packages import PACKAGES
from rollup.lab.xapi.objects import SimHost

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

DB_GC_SECONDS = 30.0
KEY = "rolling_upgrade_in_progress"


def installed(host: SimHost) -> tuple[str, str]:
    """The xapi build and Xen version on the host's disk (what its next start runs)."""
    found = host.machine.packages() or {}
    versions = []
    for kind in ("xapi", "xen"):
        name, base = PACKAGES[kind]
        have = found.get(name)
        versions.append(have.version if have else base)
    return versions[0], versions[1]


def read_running(pool: LabPool, host: SimHost, xen: bool) -> None:
    """What the host runs now, from its disk: xapi (at a toolstack start), and Xen (at a
    boot only)."""
    xapi_build, xen_version = installed(host)
    host.xapi_build = xapi_build
    if xen:
        host.xen_version = xen_version


def differ(pool: LabPool) -> bool:
    """Whether some host's platform or xapi version differs from the master's."""
    master = pool.hosts[pool.master].rpu_versions()
    return any(host.rpu_versions() != master for host in pool.hosts.values())


def update_rolling_upgrade(pool: LabPool) -> None:
    """Set or clear the mode as db_gc does (the caller holds the pool's lock)."""
    if differ(pool) and KEY not in pool.other_config:
        pool.other_config[KEY] = "true"
        pool.emit(pool)
    elif not differ(pool) and KEY in pool.other_config:
        del pool.other_config[KEY]
        pool.emit(pool)


def start_db_gc(pool: LabPool) -> None:
    """xapi's db_gc thread: looks for a rolling upgrade (or its end) every 30 s."""

    def tick() -> None:
        with pool.lock:
            if pool.closed:
                return
            update_rolling_upgrade(pool)
        pool.scheduler.call_later(DB_GC_SECONDS, tick)

    pool.scheduler.call_later(DB_GC_SECONDS, tick)
