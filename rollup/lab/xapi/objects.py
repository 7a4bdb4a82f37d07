"""The lab pool's live objects: mutable, guarded by the LabPool's lock, never handed out.

Clients only ever see records built from these (lab/records.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from rollup.lab.layout import PinKind
from rollup.lab.machine import HostMachine
from rollup.lab.releases import platform_version
from rollup.model import version_key

NULL = "OpaqueRef:NULL"
_REF_NAMESPACE = uuid.UUID("6d1f3f8e-1a38-4c53-9b7e-6a1f6c6b0a11")

# A host's life through a reboot: up → going-down (host.reboot returned, ~10 s) → down →
# booting (xapi started: API answers, host not yet enabled) → up.
Phase = Literal["up", "going-down", "down", "booting"]


def ref_for(object_uuid: str) -> str:
    """A stable opaque reference, distinct from the uuid (clients must not mix them up)."""
    return f"OpaqueRef:{uuid.uuid5(_REF_NAMESPACE, object_uuid)}"


GUIDANCE_LEVELS = ("mandatory", "recommended", "full")


def _no_guidances() -> dict[str, list[str]]:
    return {level: [] for level in GUIDANCE_LEVELS}


@dataclass
class SimHost:
    ref: str
    uuid: str
    name: str
    address: str
    memory_total: int
    memory_overhead: int
    version: str
    metrics_ref: str
    metrics_uuid: str
    dom0: str  # VM ref of its control domain
    local_sr: str  # SR ref
    machine: HostMachine
    enabled: bool = True
    live: bool = True
    phase: Phase = "up"
    evacuating: bool = False
    held_down: bool = False  # stayed down because of a no_return fault
    agent_restarting: bool = False  # host.restart_agent called, toolstack not back yet
    agent_down: bool = False  # the toolstack is restarting: its API does not answer
    boot_time: float = 0.0
    agent_start_time: float = 0.0
    other_config: dict[str, str] = field(default_factory=dict)
    # xapi's update guidances still to act on (XenServer: set by host.apply_updates).
    guidances: dict[str, list[str]] = field(default_factory=_no_guidances)
    installer: str | None = None  # the release it boots the installer of (prepared)
    # What host.apply_updates records (XenServer 8).
    last_software_update: float = 0.0
    latest_synced_updates_applied: str = "unknown"  # yes | no | unknown
    last_update_hash: str = ""
    # What runs (not what is installed): xapi since its last start, Xen since the boot.
    xapi_build: str = "25.6.0"
    xen_version: str = "4.17.5"

    @property
    def platform_version(self) -> str:
        return platform_version(self.version)

    @property
    def xapi_version(self) -> str:
        """software_version's `xapi`: the toolstack's major.minor."""
        return major_minor(self.xapi_build)

    def rpu_versions(self) -> tuple[tuple[int, ...], ...]:
        """What rolling-upgrade mode compares (xen-api helpers.ml Checks.RPU.version_keys:
        platform_version and xapi)."""
        return (version_key(self.platform_version), version_key(self.xapi_version))

    def migration_versions(self) -> tuple[tuple[int, ...], ...]:
        """What a migration may not decrease (helpers.ml Checks.Migration.version_keys:
        platform_version, xapi_build and xen)."""
        return (
            version_key(self.platform_version),
            version_key(self.xapi_build),
            version_key(self.xen_version),
        )

    def older_than(self, other: SimHost) -> bool:
        """Some version a migration compares is lower here than on `other`."""
        return any_lower(self.migration_versions(), other.migration_versions())


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def any_lower(mine: tuple[tuple[int, ...], ...], theirs: tuple[tuple[int, ...], ...]) -> bool:
    """Whether one of `mine` is lower than its counterpart: xapi compares versions key by
    key (helpers.ml Checks.compare_all_versions), not as one tuple."""
    return any(a < b for a, b in zip(mine, theirs, strict=True))


@dataclass
class SimVM:
    ref: str
    uuid: str
    name: str
    memory: int  # memory_static_max
    memory_overhead: int
    power_state: str  # "Running" | "Halted" | "Paused"
    resident_on: str = NULL
    affinity: str = NULL
    ha_priority: str = ""
    is_control_domain: bool = False
    pin: PinKind | None = None
    pin_host: str = NULL  # host ref whose local SR / device the VM uses
    local_sr: str = NULL  # SR ref of its disk when pinned by a local SR
    migrating_to: str | None = None  # host ref while a live migration is in flight
    migration_lost: str = ""  # set when a host went down under an in-flight migration
    operations: dict[str, str] = field(default_factory=dict)  # op ref → operation
    domid: int = -1
    other_config: dict[str, str] = field(default_factory=dict)
    guidances: dict[str, list[str]] = field(default_factory=_no_guidances)

    @property
    def footprint(self) -> int:
        """Bytes the VM occupies on a host while running: static max + Xen overhead."""
        return self.memory + self.memory_overhead


@dataclass
class SimSR:
    ref: str
    uuid: str
    name: str
    type: str
    shared: bool
    host: str = NULL  # host ref for a host-local SR


@dataclass
class SimNetwork:
    ref: str
    uuid: str
    name: str
    bridge: str
    migrations: int = 0  # live migrations that went over it (a lab statistic)


@dataclass
class SimTask:
    ref: str
    uuid: str
    name: str
    host: str  # resident_on
    created: float
    status: str = "pending"
    progress: float = 0.0
    result: Any = None  # the call's return value while pending/success
    error_info: list[str] = field(default_factory=list)
    finished: float = 0.0
    cancel_requested: bool = False
