"""Every benchmark still imports: a rename in the package must not leave bench/ broken
until the next time someone runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_benchmark_imports():
    modules = sorted(p.stem for p in BENCH.glob("*.py"))
    assert "auto_parallel" in modules and "window" in modules
    # A fresh interpreter: benchmarks import each other by bare name (`recorder`,
    # `pools`), which modules of the test suite may already hold in this one.
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(BENCH), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
