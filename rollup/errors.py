"""Every exception rollup raises, translated into a message and an exit code at the CLI.

Every error a user can cause or meet carries a one-line message that names the problem
and the fix. Hypervisor errors cross the driver boundary as `DriverError` subclasses that
keep the hypervisor's code and parameters, never as `XenAPI.Failure` or `libvirtError`.
An error that happened on a host carries `evidence`: the last lines of what the host, the
playbook or the hypervisor said, which the failure event takes to the journal, the TUI,
`rollup status`, the log and JUnit. (The lab's simulated xapi has its own wire error,
rollup/lab/xapi/failure.py: that is the simulated server's, not rollup's.)
"""

from __future__ import annotations

from collections.abc import Sequence

from rollup.text.quoting import one_line

EVIDENCE_LINES = 20  # what a failure shows of a playbook's or a command's output
EVIDENCE_CHARS = 300  # per line: a line of JSON from a module can be enormous

# Exit codes live here so the CLI, the rollout and the tests agree on them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_ABORTED = 4
EXIT_PAUSED = 5
# A run's outcome (RunFinished.outcome) as the exit code of `rollup run` and `resume`.
OUTCOME_EXIT = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "aborted": EXIT_ABORTED,
    "paused": EXIT_PAUSED,
}


class RollupError(Exception):
    """Root of every error rollup raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def evidence(self) -> tuple[str, ...]:
        """The last lines of output that show what went wrong; none by default."""
        return ()


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

    def __init__(
        self,
        message: str,
        code: str = "",
        params: Sequence[str] = (),
        output: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.params = tuple(str(p) for p in params)
        self.output = tuple(output)  # what the host printed, when a call ran a command

    @property
    def evidence(self) -> tuple[str, ...]:
        lines = tuple(one_line(line, EVIDENCE_CHARS) for line in self.output)
        if not self.code:
            return lines
        return (*lines, one_line(" ".join((self.code, *self.params)), EVIDENCE_CHARS))


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

    @property
    def evidence(self) -> tuple[str, ...]:
        return last_lines(self.output_tail)


class HostFailed(RollupError):
    """A host's step failed; the message says why, `evidence` shows it. `untouched`: the
    step changed nothing on the host (its patch was refused before it began)."""

    def __init__(
        self, message: str, code: str = "", evidence: Sequence[str] = (), untouched: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self._evidence = tuple(evidence)
        self.untouched = untouched

    @property
    def evidence(self) -> tuple[str, ...]:
        return self._evidence


class HostSkipped(RollupError):
    """A host's step found nothing to do on it: the host is skipped with this reason."""


class Problem(Exception):
    """What is wrong with one value, before anyone knows where it was written.

    `example` is a valid value shown in the fix ("rollup_canary: 1" or "--canary 1");
    `hint` replaces that fix when an example would not help. The inventory turns it into
    BadInput naming the file, the place and the variable.
    """

    def __init__(self, problem: str, example: str = "", hint: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.example = example
        self.hint = hint


class VaultNeeded(Exception):
    """A vaulted value was met and no vault password was given."""


class LabStateUnusable(Exception):
    """A lab's saved state matched its spec but could not be applied: the lab starts anew."""


def last_lines(output: str, lines: int = EVIDENCE_LINES) -> tuple[str, ...]:
    """The last non-blank lines of `output`, each on one line and of bounded length."""
    kept = [line for line in output.splitlines() if line.strip()]
    return tuple(one_line(line.rstrip(), EVIDENCE_CHARS) for line in kept[-lines:])
