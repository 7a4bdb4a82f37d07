"""The files rollup ships inside its package and opens at run time.

Each is named here and found through importlib.resources, so an installed wheel finds
them wherever pip put it. `rollup/playbooks` is a symlink to the repository's top-level
`playbooks/`, the one copy, packaged from there. tests/unit/test_wheel.py builds the
wheel and checks that it holds every file named here and no module opens another way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = (
    "py.typed",
    "schemas/plan.schema.json",
    "schemas/events.schema.json",
    "tui/rollup.tcss",
    "lab/faults.example.yml",
    "lab/dnf_launch.py",
    "playbooks/xcp-ng-update.yml",
    "playbooks/lab-patch.yml",
    "playbooks/proxmox-update.yml",
)


def path(name: str) -> Path:
    """The installed file `name` (one of SHIPPED), as a path other programs can open."""
    if name not in SHIPPED:
        raise KeyError(f"{name} is not a file rollup ships: add it to bundled.SHIPPED")
    found = resources.files("rollup").joinpath(name)
    # Ansible and Textual open these by path: rollup runs from an unpacked install.
    return Path(str(found))


def read_text(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


def playbook(name: str) -> str:
    """A playbook rollup ships (`xcp-ng-update.yml`, `lab-patch.yml`), as an absolute path."""
    return str(path(f"playbooks/{name}"))
