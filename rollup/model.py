"""The data that flows between rollup's layers: pool snapshots, policy and plans.

Everything here is a frozen dataclass with no behaviour beyond derived properties, so a
snapshot or a plan can be compared, journaled and rendered without surprises. Hosts and
VMs are identified by their hypervisor uuid (`id`), which survives reboots and
reconnects; names are for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Literal

from rollup import bundled

GiB = 1024**3
MiB = 1024**2

PowerState = Literal["Running", "Halted", "Paused", "Suspended"]
BlockerKind = Literal["local-sr", "pci", "vgpu", "sriov", "other"]
Strategy = Literal["return", "upgraded-first"]
HostOrder = Literal["inventory", "least-loaded"]
UnmovablePolicy = Literal["fail", "skip-host", "shutdown-restart"]
FailurePolicy = Literal["pause", "abort", "continue"]
HaPolicy = Literal["disable-and-restore", "refuse"]
RebootPolicy = Literal["always", "if-required"]
CheckStatus = Literal["pass", "warn", "fail"]
UpdateMethod = Literal["xapi", "playbook"]
ParallelHosts = int | Literal["auto"]  # "auto": the largest batch every VM still fits
UpdatesPolicy = Literal["planned", "latest"]


def version_key(version: str) -> tuple[int, ...]:
    """Order versions like "8.2.1" < "8.3.0" < "8.10.0"; non-numeric parts count as 0."""
    parts: list[int] = []
    for piece in version.replace("-", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Blocker:
    """Why a VM cannot be live-migrated, in the hypervisor's words and in ours."""

    kind: BlockerKind
    code: str  # e.g. "VM_REQUIRES_SR"
    params: tuple[str, ...]
    reason: str  # e.g. "disk on host-local SR 'Local storage on h2'"


@dataclass(frozen=True)
class Update:
    """One pending update as the host reports it: a package (XCP-ng's updater.py, yum) or
    an advisory (XenServer's /updates)."""

    name: str  # package name, or the advisory's id
    version: str = ""
    release: str = ""
    summary: str = ""
    severity: str = ""  # advisories: "High" or "None"; "" when the host does not say
    size: int = 0  # bytes to download, when the host says
    livepatch: bool = False  # applied to the running host: no reboot for it

    @property
    def label(self) -> str:
        """name-version-release, or the name alone for an advisory."""
        return "-".join(part for part in (self.name, self.version, self.release) if part)


@dataclass(frozen=True)
class Pending:
    """What a host still has to install, and what installing it demands (xapi's update
    guidances: "reboot_host", "restart_toolstack", "restart_device_model", "restart_vm")."""

    updates: tuple[Update, ...] = ()
    guidance: tuple[str, ...] = ()  # mandatory once installed
    recommended: tuple[str, ...] = ()  # e.g. "reboot_host_on_livepatch_failure"
    packages: tuple[str, ...] = ()  # XenServer: the RPMs behind the advisories

    @property
    def reboot(self) -> bool:
        return any(g.startswith("reboot_host") for g in self.guidance)

    @property
    def evacuate(self) -> bool:
        """Whether the host must be emptied to install them: its reboot, or its VMs'
        device models restarted (which a live migration does)."""
        return self.reboot or bool({"restart_device_model", "evacuate_host"} & set(self.guidance))


@dataclass(frozen=True)
class Host:
    id: str  # hypervisor uuid
    name: str
    address: str
    memory_total: int  # bytes
    memory_overhead: int  # bytes the hypervisor keeps for itself, control domain included
    memory_free: int  # bytes free for guests, as the hypervisor reports it now
    version: str  # product version, e.g. "8.3.0"
    platform_version: str
    enabled: bool
    live: bool
    is_master: bool
    boot_mark: str  # changes on every boot (xapi: other_config.boot_time)
    agent_start_time: str = ""  # changes on every toolstack start
    build_number: str = ""  # changes with every release (major upgrades verify it)
    # What is pending on it; None when the driver cannot tell (then only a target
    # version says whether the host needs work).
    pending: Pending | None = None
    # What xapi says must still happen after an install (host.pending_guidances).
    pending_guidances: tuple[str, ...] = ()
    patched_at: str = ""  # when packages were last installed (XCP-ng, as XO records it)
    # A major upgrade's network installer, as the host judged it when planned: None not
    # asked, "" ready, else why it cannot boot it.
    installer: str | None = None

    @property
    def capacity(self) -> int:
        """Bytes available to guest VMs when the host is empty."""
        return self.memory_total - self.memory_overhead


@dataclass(frozen=True)
class VM:
    id: str  # hypervisor uuid
    name: str
    memory: int  # bytes the VM occupies on a host while running (static max + overhead)
    power_state: PowerState
    host: str | None  # id of the host it is resident on, None when halted
    affinity: str | None = None  # id of its preferred host, if set
    ha_priority: str = ""  # "", "restart" or "best-effort"
    blockers: tuple[Blocker, ...] = ()
    # What xapi says must happen to it after an update (VM.pending_guidances), e.g.
    # "restart_vm": a reboot, which is downtime, so only when the policy says so.
    pending_guidances: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.power_state == "Running"

    @property
    def movable(self) -> bool:
        return not self.blockers


@dataclass(frozen=True)
class Lock:
    """The run lock a controller leaves on the pool (xapi: pool.other_config["rollup.lock"])."""

    run_id: str
    controller: str  # hostname of the machine running rollup
    pid: int
    started: float  # unix time
    expires: float  # unix time; a lock past this is stale


@dataclass(frozen=True)
class UnfinishedRun:
    """A run of this pool in the journal that is neither over nor carried on: paused,
    detached or its controller gone. It holds the pool: the hosts it took out of service
    wait for its resume (or its abort)."""

    run_id: str
    state: str  # paused, awaiting_approval, running (a dead controller's)
    since: float  # unix time it started


@dataclass(frozen=True)
class Pool:
    id: str
    name: str
    driver: str  # "xenapi", "libvirt"
    master: str | None  # host id; None for pools without a master (libvirt)
    ha_enabled: bool
    hosts: tuple[Host, ...]
    vms: tuple[VM, ...]  # guests only: control domains are never listed
    lock: Lock | None = None
    rolling_upgrade: bool = False  # the hypervisor's own mixed-version mode is on
    flavor: str = ""  # "xcp-ng", "xenserver" or "proxmox": how its hosts list and install updates
    updates_hash: str = ""  # XenServer: the /updates hash the pending lists belong to
    # XenServer: when the pool last synced its update repository (pool.last_update_sync):
    # what it has pending is as of then.
    updates_synced_at: float | None = None

    def host(self, host_id: str) -> Host:
        for host in self.hosts:
            if host.id == host_id:
                return host
        raise KeyError(host_id)

    def vm(self, vm_id: str) -> VM:
        for vm in self.vms:
            if vm.id == vm_id:
                return vm
        raise KeyError(vm_id)

    def resident(self, host_id: str) -> tuple[VM, ...]:
        return tuple(vm for vm in self.vms if vm.host == host_id and vm.running)


@dataclass(frozen=True)
class Window:
    """A daily maintenance window; `end` before `start` means it spans midnight."""

    start: time
    end: time


GateKind = Literal["prometheus", "http", "command"]


@dataclass(frozen=True)
class Gate:
    """A health check a host's turn waits on: before it starts, or after it is done."""

    kind: GateKind
    target: str  # Prometheus' URL, the URL to GET, or the command line
    match: str = ""  # prometheus: alertnames that block (regex); http: what the body holds
    status: int = 200  # http: the status that passes

    @property
    def name(self) -> str:
        return f"{self.kind} {self.target}" if self.kind != "command" else "command"


@dataclass(frozen=True)
class Gates:
    before_host: tuple[Gate, ...] = ()
    after_host: tuple[Gate, ...] = ()
    timeout_seconds: float = 600.0  # how long a failing gate is waited on
    interval_seconds: float = 15.0  # between two looks at a failing gate


@dataclass(frozen=True)
class Policy:
    target_version: str | None = None  # None: patch every host, verify it comes back
    strategy: Strategy = "return"
    order: HostOrder = "inventory"
    host_order: tuple[str, ...] = ()  # host names in inventory order
    max_parallel_hosts: ParallelHosts = 1
    # Fraction of each host's memory no evacuation fills (rollup_headroom: 10 %): best
    # fit otherwise packs destinations to the last byte.
    headroom: float = 0.0
    # (pool host name, zone): a batch never spans two zones (racks, failure domains).
    zones: tuple[tuple[str, str], ...] = ()
    parallel_migrations: int = 3  # concurrent live migrations per source host
    unmovable: UnmovablePolicy = "fail"
    ha: HaPolicy = "disable-and-restore"
    playbook: str = bundled.playbook("xcp-ng-update.yml")  # rollup_playbook, else ours
    pre_host_playbook: str | None = None
    post_host_playbook: str | None = None
    reboot: RebootPolicy = "always"
    canary: int = 0  # hosts to upgrade before waiting for approval
    on_failure: FailurePolicy = "pause"
    window: Window | None = None
    migration_bandwidth: int = GiB  # bytes per second for one live migration
    patch_seconds: float = 120.0  # estimate of one host's patch
    reboot_seconds: float = 300.0  # estimate of one host's reboot until it is enabled again
    host_timeout_seconds: float = 1800.0  # how long to wait for a rebooted host
    # How hosts are patched: the hypervisor's own way ("xapi": XCP-ng's updater plugin,
    # XenServer's apply_updates), or the playbook over SSH.
    update: UpdateMethod = "playbook"
    # Updates published after planning: install only what the plan saw, or the latest.
    updates: UpdatesPolicy = "planned"
    restart_vms: bool = False  # reboot VMs whose updates demand it (restart_vm guidance)
    retries: int = 0  # times a host's failed step is tried again before the host fails
    retry_delay_seconds: float = 10.0  # before the first retry; doubled for each next one
    max_failed_hosts: int | None = None  # more failed hosts than this stops the run
    gates: Gates = field(default_factory=Gates)  # health checks around each host
    installer_url: str | None = None  # a major upgrade's network installer repository
    # Download every host's updates before the first evacuation, all hosts at once, so a
    # host is out of service for its install and reboot only.
    prestage: bool = True
    download_seconds: float = 0.0  # estimate of one host's download (0: not counted)
    # How long one host's install by the hypervisor's own service may take, waits for a
    # busy service included (XCP-ng's yum runs minutes; Xen Orchestra: ">15 minutes").
    install_timeout_seconds: float = 7200.0


@dataclass(frozen=True)
class Check:
    name: str  # stable identifier, e.g. "hosts-live", "capacity", "unmovable-vm"
    status: CheckStatus
    reason: str  # a sentence a person can act on
    host: str | None = None  # host id the check is about
    vm: str | None = None  # VM id the check is about


@dataclass(frozen=True)
class Move:
    """One live migration the plan asks for."""

    vm: str  # VM id
    vm_name: str
    source: str  # host id
    dest: str  # host id
    memory: int  # bytes


@dataclass(frozen=True)
class HostStep:
    """Everything that happens to one host in its turn."""

    host: str  # host id
    host_name: str
    version_before: str
    evacuate: tuple[Move, ...]  # out of this host before it is patched
    restore: tuple[Move, ...]  # after it is back (back home, or off parked hosts)
    stop: tuple[str, ...] = ()  # VM ids shut down because they cannot move
    start: tuple[str, ...] = ()  # VM ids started again on this host after its upgrade
    estimate_seconds: float = 0.0
    # What the host reported pending when planned (None: it cannot tell), and whether it
    # is patched where it runs: its VMs stay, it is not rebooted (a livepatch, a
    # toolstack restart).
    pending: Pending | None = None
    in_place: bool = False
    upgrade: bool = False  # a major upgrade to the target version (not a patch)
    zone: str | None = None  # rollup_zone: the failure domain the host is in


@dataclass(frozen=True)
class Batch:
    """Hosts upgraded at the same time; the master is always alone in its batch."""

    index: int
    steps: tuple[HostStep, ...]
    # Bytes used by guests on each host (id → bytes) once the batch is finished; with
    # memory_peak, lets a reader verify that no host is ever over-committed.
    memory_after: tuple[tuple[str, int], ...] = ()
    memory_peak: tuple[tuple[str, int], ...] = ()  # the most each host holds during it
    estimate_seconds: float = 0.0


@dataclass(frozen=True)
class SkippedHost:
    host: str  # host id
    host_name: str
    reason: str


PrestageMethod = Literal["ssh", "repository", "none"]


@dataclass(frozen=True)
class Prestage:
    """How the run gets updates onto the hosts before it takes any out of service."""

    method: PrestageMethod  # ssh: yum --downloadonly on each host; repository: the pool's
    reason: str  # a sentence for the plan


@dataclass(frozen=True)
class Concurrency:
    """How many hosts the plan takes down at once, and why that many."""

    hosts: int  # the largest batch
    reason: str  # a sentence: what set the number, what stopped a batch growing


@dataclass(frozen=True)
class Plan:
    pool: Pool
    policy: Policy
    batches: tuple[Batch, ...]
    checks: tuple[Check, ...]
    skipped: tuple[SkippedHost, ...]
    final_layout: tuple[tuple[str, str], ...]  # (VM id, host id) for every running VM
    migrations: int
    bytes_moved: int
    estimate_seconds: float
    created_by: str = field(default="rollup")
    concurrency: Concurrency = field(default_factory=lambda: Concurrency(1, ""))
    prestage: Prestage = field(default_factory=lambda: Prestage("none", ""))
    # The inventory group that describes the pool: what --pool, the run's log, status and
    # history call it (the hypervisor's own name for it may differ); "" when not known.
    inventory_name: str = ""

    @property
    def pool_title(self) -> str:
        """The pool as rollup's other outputs name it, with the hypervisor's name if it
        differs: "xcp_prod (Production)"."""
        if self.inventory_name and self.inventory_name != self.pool.name:
            return f"{self.inventory_name} ({self.pool.name})"
        return self.pool.name

    @property
    def feasible(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def steps(self) -> tuple[HostStep, ...]:
        return tuple(step for batch in self.batches for step in batch.steps)
