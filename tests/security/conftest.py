"""The `lab` fixture: a lab pool with real sshd per host (see tests/security/labs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rollout.conftest import Lab
from tests.security.labs import start_lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = start_lab(tmp_path)
    try:
        yield lab
    finally:
        lab.running.stop()
