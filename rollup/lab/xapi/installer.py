"""The network installer of a major upgrade: `prepare_host_upgrade.py` on a lab host.

As XenCenter's Rolling Pool Upgrade wizard uses it (the plugin's arguments are `url`):
- `testUrl`: is `url` an installer repository (its `.treeinfo` and boot files answer)
  of a release not older than the host's: "true", else the plugin's error;
- `testSafe2Upgrade`: is the host safe to upgrade: "true", "not_enough_space" (its local
  SR is smaller than an upgrade needs) or "false" (virtual disks live on it), as
  xenserver/host-upgrade-plugin's `safe2upgrade` answers (packaged by
  xcp-ng-rpms/host-upgrade-plugin); the lab's hosts are safe unless the
  `unsafe_to_upgrade` fault says otherwise;
- `getVersion`: the repository's release, as JSON;
- `main`: set the host to boot the installer: at its next reboot it comes back at that
  release, with the release's base packages (then its updates are pending), unless the
  `return_old_version` fault makes it boot its old one.
Errors come as xapi reports an exception of a plugin: XENAPI_PLUGIN_FAILURE [fn,
exception, reason] with reason MISSING_URL, INVALID_URL (not a repository, or not
reachable) or INVALID_VER (older than the host).

The repository itself is served over HTTP by the running lab (lab/installer_repo.py);
the plugin fetches it for real, so a wrong URL fails as it would on a host.
"""

from __future__ import annotations

import configparser
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from rollup.lab.releases import platform_version
from rollup.lab.xapi.failure import XapiFailure
from rollup.model import version_key

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

PLUGIN = "prepare_host_upgrade.py"
BOOT_FILES = ("install.img", "boot/vmlinuz", "boot/xen.gz", "boot/isolinux/isolinux.cfg")
FETCH_TIMEOUT = 10.0


def call(pool: LabPool, host_ref: str, fn: str, args: dict[str, str]) -> str:
    host = pool.host(host_ref)
    if fn == "testSafe2Upgrade":
        return pool.faults.for_host(host.name, host.uuid).unsafe_to_upgrade or "true"
    if fn not in ("testUrl", "main", "getVersion"):
        raise XapiFailure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
    url = args.get("url", "").strip()
    if not url:
        raise _failure(fn, "MISSING_URL")
    version = repository_version(url)
    if version is None:
        raise _failure(fn, "INVALID_URL")
    if fn == "getVersion":
        platform = platform_version(version)
        return json.dumps({"product-version": version, "platform-version": platform})
    with pool.lock:
        if version_key(version) < version_key(host.version):
            # main reports any problem of the repository as INVALID_URL.
            raise _failure(fn, "INVALID_VER" if fn == "testUrl" else "INVALID_URL")
        if fn == "main":
            host.installer = version
    return "true"


def _failure(fn: str, reason: str) -> XapiFailure:
    return XapiFailure("XENAPI_PLUGIN_FAILURE", fn, "Exception", reason)


def repository_version(url: str) -> str | None:
    """The release an installer repository holds, or None when `url` is not one."""
    base = url.rstrip("/") + "/"
    if not base.startswith("http://"):
        return None  # the lab serves installers over HTTP only
    try:
        with urllib.request.urlopen(base + ".treeinfo", timeout=FETCH_TIMEOUT) as reply:
            text = reply.read().decode()
        for name in BOOT_FILES:
            with urllib.request.urlopen(base + name, timeout=FETCH_TIMEOUT):
                pass
    except (OSError, urllib.error.URLError, ValueError):
        return None
    tree = configparser.ConfigParser()
    try:
        tree.read_string(text)
        return tree.get("system-v1", "product_version", fallback=None) or tree.get(
            "branding", "version"
        )
    except configparser.Error:
        return None
