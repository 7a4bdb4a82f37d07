"""XenAPI error codes → sentences a person can act on, and which codes are worth a retry.

xapi answers a failed call with `[CODE, params...]`. The rollout needs the code and the
parameters (they are kept on the exception); a person needs the numbers in GiB and the
objects by name, which is what `describe` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rollup.model import GiB, MiB

# Failures that go away by themselves: the pool is busy, restarting or reconnecting.
TRANSIENT_CODES = frozenset(
    {
        "SESSION_INVALID",
        "CANNOT_CONTACT_HOST",
        "OTHER_OPERATION_IN_PROGRESS",
        "HOST_STILL_BOOTING",
    }
)

Namer = Callable[[str], str]  # ref → a name to show, or the ref itself


def split(details: Sequence[object]) -> tuple[str, tuple[str, ...]]:
    """A XenAPI.Failure's details as (code, params)."""
    if not details:
        return "UNKNOWN_ERROR", ()
    return str(details[0]), tuple(str(p) for p in details[1:])


def size(value: str) -> str:
    """Bytes as the nearest readable unit: "4 GiB", "1.2 GiB", "512 MiB"."""
    try:
        amount = int(value)
    except ValueError:
        return value
    if amount >= GiB:
        return f"{amount / GiB:.1f}".removesuffix(".0") + " GiB"
    return f"{amount / MiB:.0f} MiB"


def describe(code: str, params: Sequence[str], name: Namer = str) -> str:
    """`CODE` followed by what its parameters mean, objects named through `name`."""
    explain = _EXPLAIN.get(code)
    detail = explain(params, name) if explain else " ".join(name(p) for p in params)
    return f"{code} {detail}".rstrip()


def _param(params: Sequence[str], index: int) -> str:
    return params[index] if len(params) > index else "?"


_EXPLAIN: Mapping[str, Callable[[Sequence[str], Namer], str]] = {
    "HOST_NOT_ENOUGH_FREE_MEMORY": lambda p, n: (
        f"needed {size(_param(p, 0))}, available {size(_param(p, 1))}" if len(p) >= 2 else ""
    ),
    "VM_REQUIRES_SR": lambda p, n: f"its disk is on SR '{n(_param(p, 1))}', not shared",
    "VM_HAS_PCI_ATTACHED": lambda p, n: "a PCI device is passed through to it",
    "VM_HAS_VGPU": lambda p, n: "a vGPU is attached to it",
    "VM_HAS_SRIOV_VIF": lambda p, n: "it has an SR-IOV network interface",
    "HOST_DISABLED": lambda p, n: f"host {n(_param(p, 0))} is disabled",
    "HOST_OFFLINE": lambda p, n: f"host {n(_param(p, 0))} is offline",
    "HOST_NOT_DISABLED": lambda p, n: "the host must be disabled first",
    "HOST_DISABLED_UNTIL_REBOOT": lambda p, n: f"host {n(_param(p, 0))} must reboot first",
    "VM_BAD_POWER_STATE": lambda p, n: (
        f"it should be {_param(p, 1).lower()} but is {_param(p, 2).lower()}"
    ),
    "NOT_SUPPORTED_DURING_UPGRADE": lambda p, n: (
        "a rolling upgrade is in progress: VMs cannot move from a newer to an older host"
    ),
    "NO_HOSTS_AVAILABLE": lambda p, n: "no host can take it",
    "OTHER_OPERATION_IN_PROGRESS": lambda p, n: (
        f"{n(_param(p, 1))} is busy with {_param(p, 2)}" if len(p) >= 3 else "busy"
    ),
}
