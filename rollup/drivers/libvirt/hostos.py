"""What libvirt does not know about a host, read and written over SSH.

- the boot id (`Host.boot_mark`): /proc/sys/kernel/random/boot_id, new at every boot;
- the version (`Host.version`): VERSION_ID of /etc/os-release, what an upgrade changes;
- disabled: libvirt has no such flag. rollup marks a host it takes out of placement with
  /run/rollup/disabled, which other controllers see; /run is a tmpfs, so a host comes
  back from a reboot enabled, as a xapi host does;
- the file systems under VM disks (`stat -f`), to tell shared storage from local;
- the run lock file (rollup/drivers/host_file_lock.py) on the pool's first host.

One SSH command per host per snapshot reads them all. On a lab host ROLLUP_LAB_ROOT
(set by its sshd) is the host's root directory; on a real host it is empty.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rollup.drivers.host_shell import ROOT, run
from rollup.errors import TransientDriverError
from rollup.remote import RemoteHost

DISABLED = '"$root/run/rollup/disabled"'
LOCK_PATH = "var/lib/rollup/lock"  # the run lock (rollup/drivers/host_file_lock.py)
LOCK = f'"$root/{LOCK_PATH}"'
# Reboot in the background, a moment later, so the command's exit status gets back to us.
REBOOT = "nohup sh -c 'sleep 1; reboot' >/dev/null 2>&1 &"

_PROBE = f"""{ROOT}
printf 'boot_id %s\\n' "$(cat "$root/proc/sys/kernel/random/boot_id")"
if [ -e {DISABLED} ]; then printf 'disabled %s\\n' "$(head -c 300 {DISABLED} | tr '\\n' ' ')"; fi
printf 'version %s\\n' "$( . "$root/etc/os-release" 2>/dev/null; printf %s "${{VERSION_ID:-}}")"
"""
_LOCK_PROBE = f"if [ -e {LOCK} ]; then printf 'lock %s\\n' \"$(head -c 2000 {LOCK})\"; fi\n"
_FS_PROBE = 'for p in {paths}; do printf "fs %s %s\\n" "$(stat -f -c %T -- "$p" 2>/dev/null || echo missing)" "$p"; done\n'  # noqa: E501


@dataclass(frozen=True)
class HostFacts:
    boot_id: str
    version: str
    disabled: str | None  # the marker's text: who disabled the host, when
    lock: str | None = None  # the run lock's text, read on the first host only
    file_systems: dict[str, str] = field(default_factory=dict)  # disk path → fs type


def probe(host: RemoteHost, disk_paths: Sequence[str] = (), lock: bool = False) -> HostFacts:
    command = _PROBE
    if lock:
        command += _LOCK_PROBE
    if disk_paths:
        command += _FS_PROBE.format(paths=" ".join(shlex.quote(p) for p in disk_paths))
    facts: dict[str, str] = {}
    file_systems: dict[str, str] = {}
    for line in run(host, command, f"read the state of host {host.name}").splitlines():
        key, _, value = line.partition(" ")
        if key == "fs":
            fs_type, _, path = value.partition(" ")
            file_systems[path] = fs_type
        else:
            facts[key] = value.strip()
    if not facts.get("boot_id"):
        raise TransientDriverError(f"host {host.name} reported no boot id", "NO_BOOT_ID")
    return HostFacts(
        boot_id=facts["boot_id"],
        version=facts.get("version", ""),
        disabled=facts.get("disabled"),
        lock=facts.get("lock") or None,
        file_systems=file_systems,
    )


def mark_disabled(host: RemoteHost) -> None:
    text = f"disabled by rollup on {socket.gethostname()} (pid {os.getpid()}) at {time.time():.0f}"
    run(
        host,
        f'{ROOT}; mkdir -p "$root/run/rollup" && printf "%s\\n" {shlex.quote(text)}'
        f' > "$root/run/rollup/disabled.partial" && mv "$root/run/rollup/disabled.partial"'
        f" {DISABLED}",
        f"disable host {host.name}",
    )


def clear_disabled(host: RemoteHost) -> None:
    run(host, f"{ROOT}; rm -f {DISABLED}", f"enable host {host.name}")


def reboot(host: RemoteHost) -> None:
    run(host, REBOOT, f"reboot host {host.name}")
