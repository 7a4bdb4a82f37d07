"""Real dnf for one lab host, run by dnf's own interpreter (never imports rollup).

    python3 dnf_launch.py BOOT_TIME DNF-ARGUMENT...

lab/dnf_host.py runs this with the host's root as --installroot and its config. Two
facts of a real host are not true of a lab host, and only those two are changed here
before dnf's own main runs:

- The host's root directory belongs to the user running the lab, who is its superuser:
  dnf's check for uid 0 (dnf/cli/cli.py `_process_demands`, dnf/util.py `am_i_root`)
  would refuse a lab run by anyone else.
- The host boots when the lab says, not when this machine did: `needs-restarting -r`
  (dnf-plugins-core needs_restarting.py, `ProcessStart.get_boot_time`, the mtime of
  /proc/1) compares package install times with BOOT_TIME instead.

Everything else (arguments, repositories, metadata cache, --downloadonly, the rpmdb
lock and its waiting, the transaction, exit codes) is dnf's.
"""

import sys


def main() -> int:
    boot_time = int(float(sys.argv[1]))
    arguments = sys.argv[2:]
    import dnf.cli.cli
    import dnf.cli.main
    import dnf.util

    dnf.util.am_i_root = lambda: True
    run = dnf.cli.cli.Cli.run

    def run_at_lab_boot(cli: object) -> object:
        # dnf loads its plugins as modules of its own making, after parsing the command
        # line: needs-restarting's clock is reachable only here, before its run.
        for name, module in list(sys.modules.items()):
            starts = getattr(module, "ProcessStart", None)
            if name.endswith("needs_restarting") and starts is not None:
                starts.get_boot_time = staticmethod(lambda: boot_time)
        return run(cli)

    dnf.cli.cli.Cli.run = run_at_lab_boot
    return int(dnf.cli.main.user_main(arguments, exit_code=False) or 0)


if __name__ == "__main__":
    sys.exit(main())
