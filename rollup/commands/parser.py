"""The command line: every command, flag and its help. Parsing only, no work."""

from __future__ import annotations

import argparse
from typing import NoReturn

from rollup import __version__
from rollup.errors import EXIT_BAD_INPUT
from rollup.text.quoting import one_line

DESCRIPTION = """\
Upgrade a hypervisor pool one host at a time with no VM downtime: each host is
disabled, evacuated by live migration, patched over SSH/Ansible, rebooted, verified,
enabled, and its VMs brought back. An Ansible inventory names the pools: each group's
rollup_driver is xenapi (XCP-ng, XenServer), proxmox (Proxmox VE) or libvirt (KVM).

Start with the embedded lab pool, which needs nothing else:
  rollup plan inventories/lab.yml      preview every move, change nothing
  rollup run inventories/lab.yml       upgrade it

Exit codes: 0 done, 1 failed, 2 bad input/credentials/unreachable pool,
3 refused by checks or the run lock, 4 aborted, 5 paused and resumable.
"""

POLICY_FLAGS = {
    "target_version": "--target-version",
    "strategy": "--strategy",
    "order": "--order",
    "max_parallel_hosts": "--max-parallel-hosts",
    "headroom": "--headroom",
    "parallel_migrations": "--parallel-migrations",
    "unmovable": "--unmovable",
    "playbook": "--playbook",
    "reboot": "--reboot",
    "canary": "--canary",
    "on_failure": "--on-failure",
    "window": "--window",
    "ha": "--ha",
    "migration_bandwidth": "--migration-bandwidth",
    "prestage": "--prestage",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, like every other error."""

    def error(self, message: str) -> NoReturn:
        # argparse echoes unrecognized arguments as typed, line breaks and all.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {one_line(message)}; see {self.prog} --help\n")


def _policy_flags(parser: argparse.ArgumentParser, run: bool) -> None:
    group = parser.add_argument_group("policy (overrides the inventory's rollup_* variables)")
    group.add_argument("--target-version", metavar="V", help="version every host must reach")
    group.add_argument(
        "--strategy",
        metavar="S",
        help="return: VMs go back to their hosts (default); upgraded-first: fewer migrations",
    )
    group.add_argument("--order", metavar="O", help="inventory (default) or least-loaded")
    group.add_argument(
        "--max-parallel-hosts",
        metavar="N",
        help="hosts upgraded at once, or auto: the most that leave every VM a place",
    )
    group.add_argument(
        "--headroom",
        metavar="P",
        help="memory no evacuation fills on any host, e.g. 10%% (default 0)",
    )
    group.add_argument(
        "--parallel-migrations", metavar="N", help="live migrations at once per host"
    )
    group.add_argument(
        "--unmovable", metavar="P", help="VMs that cannot move: fail, skip-host, shutdown-restart"
    )
    group.add_argument("--playbook", metavar="FILE", help="the patch playbook")
    group.add_argument(
        "--reboot", metavar="R", help="always, or if-required (the playbook decides)"
    )
    group.add_argument("--ha", metavar="P", help="disable-and-restore (default) or refuse")
    group.add_argument(
        "--prestage",
        metavar="B",
        help="true (default): download every host's updates before the first evacuation",
    )
    group.add_argument(
        "--migration-bandwidth", metavar="B", help="for the estimate, e.g. 1GiB (per second)"
    )
    if run:
        group.add_argument("--canary", metavar="N", help="wait for approval after N hosts")
        group.add_argument(
            "--on-failure", metavar="P", help="pause (default, resumable), abort or continue"
        )
        group.add_argument(
            "--window", metavar="HH:MM-HH:MM", help="start no host outside this daily window"
        )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", metavar="DIR", help="where the journal lives (default ~/.local/state/rollup)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail in the log")


def _inventory_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inventory", help="an Ansible inventory (file or directory)")
    parser.add_argument("--pool", metavar="NAME", help="the pool group, if there are several")
    parser.add_argument(
        "--vault-password-file", metavar="FILE", help="for vaulted rollup_api_password"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rollup",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rollup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    plan = sub.add_parser(
        "plan",
        help="show every move of an upgrade without changing anything",
        description="Compute the plan: host order and batches, where every running VM"
        " goes and comes back, every check with its reason, and the estimate. Exit 0 when"
        " the plan is feasible, 3 when checks fail, 2 on bad input.",
    )
    _inventory_args(plan)
    plan.add_argument(
        "--format",
        choices=("table", "markdown", "json"),
        help="table on a terminal (default), markdown for a change ticket, json for scripts",
    )
    plan.add_argument("--tui", action="store_true", help="show the plan in the TUI")
    plan.add_argument(
        "--pools",
        metavar="A,B|all",
        help="plan several pools of the inventory, one after the other (json: one a line)",
    )
    _policy_flags(plan, run=False)
    _common(plan)

    run = sub.add_parser(
        "run",
        help="upgrade a pool",
        description="Plan, confirm, then upgrade the pool host by host. Without --yes"
        " the plan is shown and confirmed first. On a terminal the TUI follows the run;"
        " elsewhere (or with --no-tui) log lines go to stderr.",
    )
    _inventory_args(run)
    run.add_argument("--yes", action="store_true", help="do not ask; approve canary gates")
    run.add_argument("--no-tui", action="store_true", help="log lines instead of the TUI")
    run.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    run.add_argument("--junit", metavar="FILE", help="write a JUnit report, a case per host")
    run.add_argument("--break-lock", action="store_true", help="take over a stale run lock")
    fleet = run.add_argument_group(
        "fleets (several pools of the inventory, each with its own lock, plan, journal run"
        " and report; one pool's failure does not stop the others)"
    )
    fleet.add_argument(
        "--pools", metavar="A,B|all", help="the pools to upgrade, or all of the inventory's"
    )
    fleet.add_argument(
        "--max-parallel-pools",
        type=int,
        default=1,
        metavar="N",
        help="pools upgraded at once (default 1); the exit code is the worst pool's",
    )
    _policy_flags(run, run=True)
    _common(run)

    resume = sub.add_parser(
        "resume",
        help="continue a paused or interrupted run",
        description="Re-read the pool, reconcile it with the journal and continue the run"
        " from its last safe point. Without RUN, the latest unfinished run.",
    )
    resume.add_argument("run", nargs="?", help="run id (a prefix is enough)")
    resume.add_argument("--yes", action="store_true", help="approve canary gates")
    resume.add_argument("--no-tui", action="store_true", help="log lines instead of the TUI")
    resume.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    resume.add_argument("--junit", metavar="FILE", help="write a JUnit report, a case per host")
    resume.add_argument("--break-lock", action="store_true", help="take over a stale run lock")
    resume.add_argument(
        "--vault-password-file", metavar="FILE", help="for vaulted rollup_api_password"
    )
    _common(resume)

    status = sub.add_parser("status", help="where a run is, host by host")
    status.add_argument("run", nargs="?", help="run id (default: the latest)")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.add_argument("--watch", action="store_true", help="follow it live")
    _common(status)

    report = sub.add_parser(
        "report",
        help="a run's report: HTML with its timeline, or Markdown",
        description="What a run did, host by host: the plan and what happened side by side,"
        " a timeline of every host's states, waits and live migrations, what diverged from"
        " the plan and what failed, with its evidence. HTML (one file, nothing to fetch;"
        " written to rollup-RUN.html unless -o says otherwise) or Markdown for a change"
        " ticket (to stdout).",
    )
    report.add_argument("run", nargs="?", help="run id (default: the latest)")
    report.add_argument("--format", choices=("html", "markdown"), default="html")
    report.add_argument("-o", "--output", metavar="FILE", help="where to write it ('-': stdout)")
    _common(report)

    history = sub.add_parser("history", help="past runs")
    history.add_argument("--json", action="store_true", help="machine-readable")
    _common(history)

    for name, text in (
        ("approve", "approve a run waiting at an approval gate: its start or its canary"),
        ("pause", "pause a run between steps"),
        ("abort", "abort a run, leaving the pool safe"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("run", help="run id (a prefix is enough)")
        _common(command)
    for name, text in (
        ("skip", "leave a host of a run out (a failed or pending one), as the TUI's `s` does;"
         " a paused run then goes on with the others"),
        ("retry", "try a failed host of a run again, as the TUI's `r` does"),
    ):  # fmt: skip
        command = sub.add_parser(
            name, help=text, description=f"{text[0].upper()}{text[1:]}. A live run takes it"
            " at once; a paused one at its `rollup resume`.",
        )  # fmt: skip
        command.add_argument("run", help="run id (a prefix is enough)")
        command.add_argument("host", help="the host's name, as the plan and status show it")
        _common(command)

    lab = sub.add_parser(
        "lab",
        help="the embedded lab pool",
        description="A simulated XenServer/XCP-ng pool that speaks XenAPI (or a Proxmox VE"
        " cluster that speaks the PVE REST API), whose hosts can be reached over real SSH.",
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    up = lab_sub.add_parser(
        "up",
        help="start a lab pool in the foreground (Ctrl-C stops it)",
        description="Start a lab pool and keep it running until Ctrl-C, SIGTERM or a closed"
        " terminal. Prints the API URL and credentials and writes DIR/inventory.yml for"
        " rollup and Ansible. Whatever the lab starts (sshd, libvirtd, QEMU) stops with it,"
        " even if this process is killed.",
    )
    up.add_argument("--hosts", type=int, default=4, metavar="N", help="hosts (default 4)")
    up.add_argument("--vms", type=int, default=24, metavar="M", help="guest VMs (default 24)")
    up.add_argument("--seed", type=int, default=1, metavar="S", help="generator seed")
    up.add_argument(
        "--speed", type=float, default=20.0, metavar="X", help="time runs X times faster (20)"
    )
    up.add_argument("--ssh", action="store_true", help="give each host a real sshd")
    up.add_argument(
        "--libvirt",
        action="store_true",
        help="real libvirtd hosts and QEMU guests (root; --hosts, --vms, --dir, --network)",
    )
    up.add_argument("--port", type=int, default=0, metavar="P", help="API port (default: free)")
    up.add_argument("--dir", default="lab", metavar="D", help="lab directory (default ./lab)")
    up.add_argument("--faults", metavar="FILE", help="YAML fault script, re-read when changed")
    up.add_argument(
        "--network", default="127.0.10.0", metavar="A.B.C.0", help="loopback /24 for hosts"
    )
    up.add_argument(
        "--flavor",
        choices=("xcp-ng", "xenserver", "proxmox"),
        default="xcp-ng",
        help="XCP-ng (updater.py plugin), XenServer 8 (/updates, apply_updates, guidances)"
        " or Proxmox VE (its REST API over HTTPS, apt over SSH; implies --ssh)",
    )
    up.add_argument(
        "--proxmox",
        dest="flavor",
        action="store_const",
        const="proxmox",
        help="a Proxmox VE cluster: the same as --flavor proxmox",
    )
    up.add_argument(
        "--release",
        metavar="V",
        help="what the hosts run at start (default the flavor's current: 8.3.0, 8.4.0); an"
        " older one (8.2.1) makes a pool to upgrade with the lab's network installer",
    )
    up.add_argument(
        "--update",
        choices=("xapi", "playbook"),
        help="how the inventory it writes patches hosts (default xapi; a Proxmox VE lab's"
        " are patched by apt over SSH)",
    )
    up.add_argument(
        "--up-to-date", action="store_true", help="every host starts with nothing pending"
    )
    publish = lab_sub.add_parser(
        "publish",
        help="publish updates to a running lab's package repository",
        description="Add a new build of the named kinds of package to the lab's repository,"
        " as one advisory: its hosts see them pending at once (updater.py, /updates and the"
        " hosts' own yum all read it). A plan made before no longer matches the pool.",
    )
    publish.add_argument("--dir", default="lab", metavar="D", help="lab directory (default ./lab)")
    publish.add_argument(
        "--kind",
        action="append",
        choices=("kernel", "xen", "xapi", "qemu", "firmware", "userspace"),
        help="what to publish, repeatable (default: kernel and userspace)",
    )
    publish.add_argument(
        "--livepatch",
        action="store_true",
        help="kernel and Xen builds come as livepatches (XenServer needs no reboot for them)",
    )
    publish.add_argument(
        "--release", metavar="V", help="the release stream (default: what the lab's hosts run)"
    )
    publish.add_argument(
        "--minor",
        action="store_true",
        help="a new minor version, not only a new release (xapi 25.6 → 25.7: the pool is in"
        " rolling-upgrade mode until every host runs it)",
    )
    down = lab_sub.add_parser(
        "down",
        help="stop the lab running in a directory, or what a dead one left",
        description="Stop the lab whose directory is DIR (a `rollup lab up` in the background"
        " or another terminal, or a `rollup run` of a lab inventory: it stops at its next"
        " safe point), then stop any process a lab there left behind.",
    )
    down.add_argument("--dir", default="lab", metavar="D", help="lab directory (default ./lab)")
    lab_sub.add_parser(
        "faults",
        help="print an example fault script for --faults",
        description="Print the example fault script (every fault the lab can inject, with"
        " comments) to copy and edit: rollup lab faults > faults.yml.",
    )
    return parser
