"""host.call_plugin on a lab host: the host plugins rollup and Xen Orchestra call.

`updater.py` (XCP-ng's updates, lab/xapi/updater.py) and `prepare_host_upgrade.py` (the
network installer, lab/xapi/installer.py). Plugin arguments are a map of strings; a
plugin the host lacks answers XENAPI_MISSING_PLUGIN [name], a function it lacks
UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn], as xapi does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollup.lab.xapi import installer, updater
from rollup.lab.xapi.failure import XapiFailure

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def call_plugin(pool: LabPool, host_ref: str, plugin: str, fn: str, args: Any) -> str:
    arguments = {str(k): str(v) for k, v in (args or {}).items()} if isinstance(args, dict) else {}
    if plugin == updater.PLUGIN:
        return updater.call(pool, host_ref, str(fn), arguments)
    if plugin == installer.PLUGIN:
        return installer.call(pool, host_ref, str(fn), arguments)
    raise XapiFailure("XENAPI_MISSING_PLUGIN", str(plugin))
