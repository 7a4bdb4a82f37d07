"""One exception tree for rollup, translated into a message and an exit code at the CLI.

Every error a user can cause or meet carries a one-line message that names the problem
and the fix. Hypervisor errors cross the driver boundary as `DriverError` subclasses that
keep the hypervisor's code and parameters, never as `XenAPI.Failure` or `libvirtError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rollup.text.quoting import one_line

# Exit codes live here so the CLI, the rollout and the tests agree on them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_ABORTED = 4
EXIT_PAUSED = 5


class RollupError(Exception):
    """Root of every error rollup raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(RollupError):
    """Inventory, flags or credentials are wrong; nothing was changed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        # Names echoed from the input (a group, a host, a file) may hold anything: the
        # message stays one line whatever they hold.
        super().__init__(one_line(message))


class PoolUnreachable(BadInput):
    """The pool's API cannot be reached or refuses our credentials.

    `transient` marks a connection that was refused or timed out, as while the master
    reboots: worth waiting for when resuming a run, never for wrong credentials.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Refused(RollupError):
    """Checks or a lock refuse the run; nothing was changed."""

    exit_code = EXIT_REFUSED


class DriverError(RollupError):
    """A hypervisor call failed. `code` and `params` are the hypervisor's own."""

    def __init__(self, message: str, code: str = "", params: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.params = tuple(str(p) for p in params)


class TransientDriverError(DriverError):
    """A failure worth retrying: connection lost, master rebooting, operation in progress."""


class MigrationRefused(DriverError):
    """A live migration was refused or failed; the VM stays where it was."""

    def __init__(
        self, vm: str, dest: str, message: str, code: str = "", params: Sequence[str] = ()
    ) -> None:
        super().__init__(message, code, params)
        self.vm = vm
        self.dest = dest


class HostTimeout(DriverError):
    """A host did not come back within the allowed time."""


class LockHeld(Refused):
    """Another controller holds the pool's run lock."""


class RemoteError(RollupError):
    """SSH or Ansible failed on a host. Carries the tail of the output as evidence."""

    def __init__(self, message: str, host: str = "", output_tail: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.output_tail = output_tail
