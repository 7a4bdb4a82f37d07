"""A lab's package repository on disk: seeded when a lab starts fresh, kept when restored."""

from __future__ import annotations

from pathlib import Path

from rollup.errors import LabStateUnusable
from rollup.lab import releases
from rollup.lab.layout import Layout
from rollup.lab.package_seed import seed
from rollup.lab.packages import REPOSITORY_FILE, Repository, stream_of


def seed_repository(layout: Layout, path: Path | None = None) -> Repository:
    """The repository a fresh lab starts with: the streams its hosts run and the one its
    installer brings, each with a few updates published since its release."""
    streams = [stream_of(spec.version) for spec in layout.hosts]
    streams.append(stream_of(releases.current(layout.flavor)))
    distro = "deb" if layout.flavor == "proxmox" else "rpm"
    return seed(streams, int(layout.pool_uuid.replace("-", "")[:8], 16), path, distro=distro)


def open_repository(layout: Layout, directory: Path, fresh: bool) -> Repository:
    """The lab's package repository: seeded anew for a fresh lab, else the one it had."""
    path = directory / "repo" / REPOSITORY_FILE
    if not fresh and path.exists():
        try:
            return Repository.load(path)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise LabStateUnusable(f"its package repository is unusable ({error!r})") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    return seed_repository(layout, path)
