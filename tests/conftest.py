"""The suite tests the rollup a user installed, never the source tree beside it.

pytest would otherwise import `rollup` from the checkout, and a file the wheel forgets
would pass unnoticed. The checkout stays on sys.path only at the end, for the tests'
own helpers (`tests.*`), after site-packages. An editable install (`pip install -e`)
is allowed: it is the developer's own choice of what is installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except OSError:
        return False


sys.path[:] = [entry for entry in sys.path if not _is_root(entry)]
sys.path.append(str(ROOT))


def _installed_from() -> str | None:
    """Why the imported rollup is not the installed one, or None when it is."""
    try:
        distribution = importlib.metadata.distribution("rollup")
    except importlib.metadata.PackageNotFoundError:
        return "rollup is not installed"
    import rollup

    location = Path(rollup.__file__).resolve()
    if not location.is_relative_to(ROOT):
        return None
    direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        return None
    return f"rollup was imported from the checkout ({location.parent}), not from the install"


# The longest files first, so no worker starts one of them last while the others idle.
LONGEST_FIRST = (
    "tests/libvirt/",
    "tests/reliability/test_load.py",
    "tests/reliability/test_crash_matrix.py",
    "tests/reliability/test_fault_matrix.py",
    "tests/rollout/test_run_lab.py",
    "tests/proxmox/",
    "tests/security/",
    "tests/awx/",
    "tests/rollout/test_policies.py",
    "tests/fleet/",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker more than the cores. Most tests wait more than they compute
    (on ansible-playbook, sshd, a lab's simulated clock), so one more keeps every core
    busy; the loopback networks are per worker (tests/loopback.py) whatever their count."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        found = [i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)]
        return found[0] if found else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


def pytest_configure(config: pytest.Config) -> None:
    problem = _installed_from()
    if problem:
        pytest.exit(f"{problem}: pip install '.[test]' first", returncode=2)
