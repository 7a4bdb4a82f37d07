"""The wheel holds every file rollup opens at run time, and rollup opens them only one way.

A file the package forgets would work from the checkout and fail for every user who
installed the wheel; this test builds the wheel and lists it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rollup import bundled

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rollup"


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The wheel .ci/run built and installed (ROLLUP_WHEEL), else one built from here."""
    given = os.environ.get("ROLLUP_WHEEL")
    if given:
        wheel = Path(given)
    else:
        # From a copy of what the build reads: a stale build/ in the checkout hides a loss.
        source = tmp_path_factory.mktemp("source")
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        for name in ("rollup", "playbooks"):
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
        out = tmp_path_factory.mktemp("wheel")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        (wheel,) = out.glob("rollup-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_every_file_rollup_opens(wheel_files: set[str]):
    missing = [name for name in bundled.SHIPPED if f"rollup/{name}" not in wheel_files]
    assert not missing, f"the wheel lacks {missing}: add them to package-data in pyproject"


def test_every_file_in_the_package_tree_is_in_the_wheel_or_named(wheel_files: set[str]):
    """Every data file under rollup/ (playbooks/ through its link) ships and is named."""
    found = {
        str((Path(folder) / name).relative_to(PACKAGE))
        for folder, _, names in os.walk(PACKAGE, followlinks=True)
        for name in names
        if "__pycache__" not in folder and not name.endswith((".py", ".pyc"))
    }
    assert "playbooks/lab-patch.yml" in found, "rollup/playbooks must link to playbooks/"
    assert sorted(found - set(bundled.SHIPPED)) == [], "name these in bundled.SHIPPED"
    assert sorted(f"rollup/{name}" for name in found if f"rollup/{name}" not in wheel_files) == []


def test_the_one_copy_of_the_playbooks_is_the_top_level_one():
    link = PACKAGE / "playbooks"
    assert link.is_symlink() and link.resolve() == ROOT / "playbooks"


def test_no_module_finds_a_file_from_its_own_location():
    """Files are found through bundled (importlib.resources), never from __file__."""
    offenders = []
    for module in PACKAGE.rglob("*.py"):
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "__file__":
                offenders.append(f"{module.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_installed_files_open_from_the_installed_package():
    for name in bundled.SHIPPED:
        assert bundled.path(name).is_file(), name
    with pytest.raises(KeyError, match=r"bundled\.SHIPPED"):
        bundled.path("lab/not-shipped.yml")
