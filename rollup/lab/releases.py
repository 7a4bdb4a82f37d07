"""The releases a lab host can run, per flavor: what it calls itself and how it updates.

XCP-ng 8.2 and 8.3 both patch through the `updater.py` host plugin; XenServer 8 (product
version 8.4.0) through the pool's `/updates` and `host.apply_updates`, while the Citrix
Hypervisor 8.2 it upgrades from has neither. A major upgrade goes from the older release
to the newer through the network installer (lab/xapi/installer.py). Proxmox VE 8.2 and
8.3 hosts patch with apt over SSH (lab/apt.py); its lab runs one release.
"""

from __future__ import annotations

from rollup.errors import BadInput
from rollup.lab import Flavor
from rollup.model import version_key

# The older and the current release of each flavor: a lab's hosts run one of them, its
# installer repository serves the current one.
RELEASES: dict[Flavor, tuple[str, str]] = {
    "xcp-ng": ("8.2.1", "8.3.0"),
    "xenserver": ("8.2.1", "8.4.0"),
    "proxmox": ("8.3.0", "8.3.0"),  # one release: no major upgrade in its lab
}
FLAVORS: tuple[Flavor, ...] = ("xcp-ng", "xenserver", "proxmox")


def current(flavor: Flavor) -> str:
    return RELEASES[flavor][1]


def older(flavor: Flavor) -> str:
    return RELEASES[flavor][0]


def check(flavor: Flavor, release: str | None) -> str:
    """The release a lab of `flavor` starts at: `release`, or the flavor's current one."""
    if release is None:
        return current(flavor)
    if release not in RELEASES[flavor]:
        raise BadInput(
            f"the {flavor} lab runs {' or '.join(dict.fromkeys(RELEASES[flavor]))}, not {release}:"
            " pick one"
        )
    return release


def brand(flavor: Flavor, version: str) -> str:
    if flavor == "xcp-ng":
        return "XCP-ng"
    if flavor == "proxmox":
        return "Proxmox VE"
    return "XenServer" if version_key(version) > version_key("8.3.0") else "Citrix Hypervisor"


def has_updater_plugin(flavor: Flavor) -> bool:
    """XCP-ng hosts list and install their updates through updater.py."""
    return flavor == "xcp-ng"


def has_update_api(flavor: Flavor, version: str) -> bool:
    """XenServer 8's pool lists updates at /updates and installs them per host."""
    return flavor == "xenserver" and version_key(version) > version_key("8.3.0")


def platform_version(product_version: str) -> str:
    """The lab's scheme: platform major = product major - 5 ("8.2.1" → "3.2.1")."""
    head, _, rest = product_version.partition(".")
    if not head.isdigit() or int(head) < 5:
        return product_version
    return f"{int(head) - 5}.{rest}" if rest else str(int(head) - 5)


def build_number(version: str) -> str:
    """Changes with every release, as a real build number does."""
    return f"release/{version}/lab"


# The current XCP-ng release: what the lab's default pool runs, and what a major
# upgrade of an older XCP-ng lab installs.
CURRENT_XCP_NG = RELEASES["xcp-ng"][1]
