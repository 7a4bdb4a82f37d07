"""Every benchmark still imports: a rename in the package must not leave bench/ broken
until the next time someone runs it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("module", sorted(p.stem for p in BENCH.glob("*.py")))
def test_each_benchmark_imports(module: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))  # benchmarks import each other by name
    imported = importlib.import_module(module)
    assert callable(getattr(imported, "main", None)) or imported.__doc__
