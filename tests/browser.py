"""Debian's Chromium, headless, rendering a page the tests wrote: its DOM and a screenshot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = "chromium"
# Without these Chromium tries the network at every start, which this machine refuses.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def render(page: Path, directory: Path, width: int = 1400, height: int = 1600) -> tuple[str, Path]:
    """The page's DOM once loaded, and a PNG screenshot of it."""
    assert shutil.which(CHROMIUM), "chromium is needed: apt-get install -y chromium (.ci/run does)"
    profile = directory / "chromium-profile"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0 and dom.stdout, dom.stderr[-2000:]
    shot = directory / (page.stem + ".png")
    done = subprocess.run(
        [*common, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    return dom.stdout, shot
