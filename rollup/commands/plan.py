"""rollup plan, and what every command that reads a pool shares: the pool and its session."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rollup.commands.session import PoolSession, open_session
from rollup.config import inventory as inventories
from rollup.errors import EXIT_OK, EXIT_REFUSED, BadInput
from rollup.model import Plan
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
    notified = [config.notify for config in loaded.pools if config.notify]
    if notified:
        from rollup.output.notify import open_targets

        for urls in notified:
            open_targets(urls)  # a URL Apprise cannot use is bad input, before all
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


def make_plan(config: inventories.PoolConfig, args: argparse.Namespace) -> Plan:
    with pool_session(config, args) as session:
        pool = session.read_pool()
        if session.config.hosts:
            session.remotes(pool)  # an inventory host that matches nothing is bad input
        return session.plan(pool)


def cmd_plan(args: argparse.Namespace) -> int:
    from rollup.output import report

    if args.pools is not None:
        return _plan_pools(args)
    plan = make_plan(load_pool(args), args)
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


def _plan_pools(args: argparse.Namespace) -> int:
    """`--pools`: every named pool's plan, one after the other (JSON: one document a line);
    3 when any is refused. Nothing is shown until every pool is planned."""
    from rollup.output import report

    if args.pool:
        raise BadInput("--pool and --pools both name pools: use --pools a,b (or all) alone")
    if args.tui:
        raise BadInput("--tui shows one pool's plan: use --pool NAME with it")
    plans = [
        make_plan(config, args)
        for config in inventories.select_pools(load_inventory(args), args.pools)
    ]
    fmt = args.format or ("table" if sys.stdout.isatty() else "markdown")
    for plan in plans:
        if fmt == "json":
            sys.stdout.write(json.dumps(report.plan_json(plan), separators=(",", ":")) + "\n")
        elif fmt == "markdown":
            sys.stdout.write(report.plan_markdown(plan) + "\n")
        else:
            report.print_plan(plan)
    return EXIT_OK if all(plan.feasible for plan in plans) else EXIT_REFUSED
