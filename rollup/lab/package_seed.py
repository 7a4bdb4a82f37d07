"""A fresh lab's packages: the repository's first builds, and what each host has installed.

The repository holds each release stream's base builds and a few advisories published
since; a pool's hosts lag behind it by position (the first most, the last up to date),
as a pool patched host by host by hand looks.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from rollup.lab.packages import (
    DEB_SUMMARIES,
    KINDS,
    SUMMARIES,
    Build,
    Installed,
    Repository,
    Rpmdb,
    package_names,
    size_of,
)


def seed(
    streams: Iterable[str],
    seed_value: int,
    path: Path | None = None,
    updates: bool = True,
    distro: str = "rpm",
) -> Repository:
    """A repository with each stream's base and, with `updates`, a few updates published
    since; the first stream is the hosts' own (`home`)."""
    streams = list(dict.fromkeys(streams))
    repository = Repository(path=path, home=streams[0] if streams else "", distro=distro)
    for stream in dict.fromkeys(streams):
        for kind in KINDS:
            name, version = package_names(distro)[kind]
            repository.builds.append(
                Build(
                    name=name,
                    version=version,
                    release="1" if distro == "deb" else f"1.xcpng{stream}",
                    kind=kind,
                    stream=stream,
                    summary=(DEB_SUMMARIES if distro == "deb" else SUMMARIES)[kind],
                    size=size_of(kind),
                )
            )
    rng = random.Random(seed_value)
    for stream in streams if updates else ():
        # The monthly shape: a userspace fix, a toolstack and device-model update, then a
        # kernel and hypervisor update (the one that needs the reboot).
        repository.publish(["userspace"], stream)
        repository.publish(["xapi", "qemu"], stream)
        repository.publish(
            ["kernel", "xen", *(["userspace"] if rng.random() < 0.5 else [])], stream
        )
    repository.save()
    return repository


def seeded_rpmdb(
    repository: Repository,
    stream: str,
    position: int,
    count: int,
    now: float,
    up_to_date: bool = False,
) -> Rpmdb:
    """The packages of the `position`-th of `count` hosts: the stream's base plus a share
    of its updates. The first hosts lag most; the last one is up to date (a pool patched
    host by host by hand looks like this); a pool of one host is all behind, unless
    `up_to_date`."""
    base = {b.name: Installed(b.version, b.release, now) for b in repository.base(stream)}
    serials = sorted({b.serial for b in repository.stream(stream) if b.advisory})
    if up_to_date or (count > 1 and position == count - 1):
        applied = len(serials)
    elif count <= 1 or not serials:
        applied = 0
    else:
        applied = min(len(serials) - 1, position * len(serials) // (count - 1))
    for build in repository.stream(stream):
        if build.advisory and build.serial in serials[:applied]:
            have = base.get(build.name)
            if have is None or build.newer_than(have.version, have.release):
                base[build.name] = Installed(build.version, build.release, now)
    return base
