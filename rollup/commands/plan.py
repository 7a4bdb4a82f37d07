"""rollup plan, and what every command that reads a pool shares: the pool and its session."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rollup.commands.session import PoolSession, open_session
from rollup.config import inventory as inventories
from rollup.errors import EXIT_OK, EXIT_REFUSED
from rollup.plan import planner
from rollup.run.journal import default_state_dir


def state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if getattr(args, "state_dir", None) else default_state_dir()


def _overrides(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, str]]:
    from rollup.commands.parser import POLICY_FLAGS

    values: dict[str, object] = {}
    flags: dict[str, str] = {}
    for key, flag in POLICY_FLAGS.items():
        value = getattr(args, key, None)
        if value is not None:
            values[f"rollup_{key}"] = value
            flags[f"rollup_{key}"] = flag
    return values, flags


def load_inventory(args: argparse.Namespace) -> inventories.Inventory:
    """The inventory with the command line's policy flags applied, every pool checked."""
    overrides, flags = _overrides(args)
    loaded = inventories.load(
        args.inventory,
        vault_password_file=args.vault_password_file,
        overrides=overrides,
        flag_names=flags,
    )
    for config in loaded.pools:
        if config.notify:
            from rollup.output.notify import open_targets

            open_targets(config.notify)  # a URL Apprise cannot use is bad input, before all
    return loaded


def load_pool(args: argparse.Namespace) -> inventories.PoolConfig:
    return inventories.select_pool(load_inventory(args), args.pool)


@contextlib.contextmanager
def pool_session(
    config: inventories.PoolConfig,
    args: argparse.Namespace,
    wait_seconds: float = 0.0,
    restore_lab: bool = False,
) -> Iterator[PoolSession]:
    session = open_session(config, state_dir(args), wait_seconds, restore_lab)
    try:
        yield session
    finally:
        session.close()


def cmd_plan(args: argparse.Namespace) -> int:
    from rollup.output import report

    config = load_pool(args)
    with pool_session(config, args) as session:
        pool = session.read_pool()
        if session.config.hosts:
            session.remotes(pool)  # an inventory host that matches nothing is bad input
        plan = planner.plan(pool, session.config.policy, now=time.time())
    if args.tui:
        from rollup.tui.app import show_plan

        return show_plan(plan)
    fmt = args.format or ("table" if sys.stdout.isatty() else "markdown")
    if fmt == "json":
        json.dump(report.plan_json(plan), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "markdown":
        sys.stdout.write(report.plan_markdown(plan))
    else:
        report.print_plan(plan)
    return EXIT_OK if plan.feasible else EXIT_REFUSED
