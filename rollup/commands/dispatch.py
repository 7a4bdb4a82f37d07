"""From a parsed command line to the module that does it, imported only then."""

from __future__ import annotations

import argparse
import importlib

# command -> (module in rollup.commands, function): `rollup status` never imports a driver.
HANDLERS = {
    "plan": ("plan", "cmd_plan"),
    "run": ("run", "cmd_run"),
    "resume": ("run", "cmd_resume"),
    "status": ("status", "cmd_status"),
    "history": ("status", "cmd_history"),
    "report": ("report", "cmd_report"),
    "approve": ("status", "cmd_send"),
    "pause": ("status", "cmd_send"),
    "abort": ("status", "cmd_send"),
    "skip": ("status", "cmd_steer"),
    "retry": ("status", "cmd_steer"),
    "lab": ("lab", "cmd_lab"),
}


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "lab" and args.lab_command is None:
        parser.parse_args(["lab", "--help"])
    module, function = HANDLERS[args.command]
    handler = getattr(importlib.import_module(f"rollup.commands.{module}"), function)
    return int(handler(args))
