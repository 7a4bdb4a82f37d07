"""`rollup lab up`, `rollup lab down` and `rollup lab faults`: the embedded lab pool."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rollup import bundled
from rollup.errors import EXIT_OK, BadInput
from rollup.text.plurals import count

_STOP_WAIT = 60.0  # a `rollup run` owning its lab stops at its next safe point


def cmd_lab(args: argparse.Namespace) -> int:
    handlers = {"up": lab_up, "down": lab_down, "faults": lab_faults, "publish": lab_publish}
    return handlers[args.lab_command](args)


def lab_up(args: argparse.Namespace) -> int:
    from rollup.lab.xapi.running import RunningLab

    for name in ("hosts", "vms"):
        if getattr(args, name) < 1:
            raise BadInput(f"--{name} must be at least 1")
    if args.speed <= 0:
        raise BadInput("--speed must be a positive number, e.g. 20")
    if args.libvirt:
        from rollup.lab.libvirt.running import LibvirtLab

        network = "127.0.20.0" if args.network == "127.0.10.0" else args.network
        return _serve_lab(LibvirtLab.start(args.hosts, args.vms, Path(args.dir), network))
    if args.flavor == "proxmox" and args.update is not None:
        raise BadInput("--update: a Proxmox VE lab's nodes are patched by apt over SSH; drop it")
    lab = RunningLab.start(
        hosts=args.hosts,
        vms=args.vms,
        seed=args.seed,
        speed=args.speed,
        ssh=args.ssh or args.flavor == "proxmox",
        port=args.port,
        directory=Path(args.dir),
        faults=args.faults,
        network=args.network,
        flavor=args.flavor,
        release=args.release,
        update=args.update or "xapi",
        up_to_date=args.up_to_date,
    )
    return _serve_lab(lab)


def _serve_lab(lab: Any) -> int:
    """Print the lab's banner and keep it up until SIGTERM, SIGHUP or Ctrl-C."""
    stop = False

    def stop_lab(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop_lab)
    try:
        print(lab.banner(), flush=True)
        while not stop:
            time.sleep(0.25)
    finally:
        lab.stop()
        print("lab stopped", file=sys.stderr)
    return EXIT_OK


def lab_down(args: argparse.Namespace) -> int:
    """Stop the lab running in --dir, and whatever a dead one there left behind."""
    from rollup.lab import reaper
    from rollup.lab.hosts import stop_stale_daemons

    directory = Path(args.dir).resolve()
    if not (directory / "hosts").is_dir():
        # Deleted under a dead lab: its daemons still name it.
        if not reaper.find(directory):
            raise BadInput(
                f"{directory} is not a lab directory: give the --dir `rollup lab up` used"
            )
        stopped = reaper.sweep(directory)
        print(_left_message(stopped, directory), file=sys.stderr)
        return EXIT_OK
    owner: int | None = None
    try:
        lock = reaper.take_lock(directory, wait=0)  # free: no lab runs there
    except BadInput:
        owner = reaper.owner_pid(directory)
        if owner is None:  # its reaper is sweeping after it died
            lock = reaper.take_lock(directory, wait=_STOP_WAIT, while_owner_lives=True)
        else:
            lock = _stop_owner(directory, owner)
    try:
        left = reaper.sweep(directory)
        stop_stale_daemons(directory)
    finally:
        os.close(lock)
    (directory / reaper.PID_FILE).unlink(missing_ok=True)
    if owner is not None:
        print(f"lab in {directory} stopped", file=sys.stderr)
    elif left:
        print(_left_message(left, directory), file=sys.stderr)
    else:
        print(f"no lab was running in {directory}", file=sys.stderr)
    return EXIT_OK


def _left_message(stopped: set[int], directory: Path) -> str:
    return f"stopped {count(len(stopped), 'process', 'processes')} a dead lab left in {directory}"


def _stop_owner(directory: Path, owner: int) -> int:
    """SIGTERM the lab's owner, SIGKILL it if it lingers; the directory's lock once free."""
    from rollup.lab import reaper

    print(f"rollup: stopping the lab in {directory} (pid {owner})", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(owner, signal.SIGTERM)
    try:
        return reaper.take_lock(directory, wait=_STOP_WAIT, while_owner_lives=True)
    except BadInput:
        print(f"rollup: pid {owner} did not stop in {_STOP_WAIT:.0f}s: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGKILL)
        # Its reaper sweeps what it left.
        return reaper.take_lock(directory, wait=_STOP_WAIT, while_owner_lives=True)


def lab_faults(args: argparse.Namespace) -> int:
    """Print the example fault script, to copy and edit for `rollup lab up --faults`."""
    sys.stdout.write(bundled.read_text("lab/faults.example.yml"))
    return EXIT_OK


def lab_publish(args: argparse.Namespace) -> int:
    """Add updates to the repository of the lab in --dir, while it runs or not."""
    from rollup.lab.packages import REPOSITORY_FILE, Repository, stream_of

    path = Path(args.dir).resolve() / "repo" / REPOSITORY_FILE
    if not path.exists():
        raise BadInput(
            f"{path.parent.parent} has no lab package repository: give the --dir of"
            " `rollup lab up` (a run's own lab is STATE_DIR/labs/POOL)"
        )
    try:
        repository = Repository.load(path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise BadInput(f"{path} is not a lab repository ({error}): start the lab again") from None
    stream = stream_of(args.release) if args.release else repository.home
    if not repository.stream(stream):
        known = ", ".join(sorted({b.stream for b in repository.builds}))
        raise BadInput(f"the lab's repository has no release {stream}: use one of {known}")
    builds = repository.publish(
        args.kind or ["kernel", "userspace"], stream, args.livepatch, args.minor
    )
    advisory = builds[0].advisory if builds else ""
    names = ", ".join(b.nvr + (" (livepatch)" if b.livepatch else "") for b in builds)
    print(f"published {advisory} on {stream}: {names}")
    if repository.distro == "rpm":
        print(
            "XCP-ng hosts see it at once; a XenServer pool after its next sync"
            " (pool.sync_updates, or rollup_sync: true in the inventory)"
        )
    return EXIT_OK
