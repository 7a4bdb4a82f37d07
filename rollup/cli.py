"""Command line: plan, run, resume, status, history, approve, lab.

This is the one place that turns errors into a message and an exit code (the codes live
in rollup.errors): a user sees one line naming the problem and the fix, never a
traceback; unexpected errors go with their traceback to the debug log in the state
directory.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from rollup.commands.parser import build_parser
from rollup.errors import EXIT_BAD_INPUT, EXIT_FAILED, RollupError
from rollup.text.quoting import one_line

EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, as the shell reports a writer it killed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version or a usage error, already printed
        return _exit_code(done)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        from rollup.commands.dispatch import dispatch
        from rollup.config.inventory import secrets_withheld_from_children

        with secrets_withheld_from_children():
            return dispatch(args, parser)
    except SystemExit as done:  # `rollup lab` alone prints the lab's help through argparse
        return _exit_code(done)
    except RollupError as error:
        # The last guard of "one line": messages not built from BadInput echo values too.
        print(f"rollup: {one_line(error.message)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("rollup: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`rollup plan --format json | head`): nothing to say to it, and
        # Python must not try to flush to it again at exit. As a writer killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as error:  # the boundary: nothing unexpected escapes as a traceback
        log = _debug_log(getattr(args, "state_dir", None))
        print(
            f"rollup: internal error: {type(error).__name__}: {one_line(str(error), 200)}"
            + (f" (traceback in {log})" if log else ""),
            file=sys.stderr,
        )
        return EXIT_FAILED


def _debug_log(state_dir: str | None) -> Path | None:
    from rollup.run.journal import default_state_dir

    try:
        folder = Path(state_dir) if state_dir else default_state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "debug.log"
        with path.open("a") as handle:
            handle.write(traceback.format_exc())
        path.chmod(0o600)
        return path
    except OSError:
        return None


def _exit_code(done: SystemExit) -> int:
    code = done.code
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # SystemExit("message"): Python would print it
    return EXIT_FAILED
