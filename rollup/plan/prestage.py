"""Whether and how the run gets every host's updates onto it before the first evacuation.

Downloading is most of a patch's time on a slow mirror, and a host is out of service
for the whole of its patch: fetched beforehand, on every host at once while all of them
still run their VMs, a host is out for its install and reboot only.
"""

from __future__ import annotations

from rollup.drivers import registry
from rollup.model import Policy, Pool, Prestage


def command(driver: str) -> str | None:
    """The shell command that pre-stages a host of this driver's pools, if it can."""
    info = registry.find(driver)
    return info.prestage_command if info is not None else None


def decide(pool: Pool, policy: Policy, upgrades: bool) -> Prestage:
    if not policy.prestage:
        return Prestage("none", "off (rollup_prestage: false): each host downloads in its turn")
    if upgrades:
        return Prestage("none", "not for a major upgrade: the installer fetches the release")
    if policy.update == "xapi" and pool.flavor == "xenserver":
        return Prestage(
            "repository",
            "XenServer stages updates in the pool's own repository (pool.sync_updates):"
            " hosts install from it, nothing to download per host",
        )
    download = command(pool.driver)
    if download is None:
        return Prestage("none", f"a {pool.driver} pool's hosts cannot download ahead")
    how = f"`{download}` over SSH on every host at once, before the first evacuation"
    if policy.update == "xapi":
        how += " (the updater plugin's yum then installs from that cache)"
    return Prestage("ssh", how)


def phase_seconds(prestage: Prestage, policy: Policy, hosts: int) -> float:
    """The pre-staging phase's share of the estimate: one download, all `hosts` at once."""
    return policy.download_seconds if prestage.method == "ssh" and hosts else 0.0
