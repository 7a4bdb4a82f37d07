"""The rollout's view of a host's OS: Ansible for the patch, SSH for reachability."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rollup.remote import PatchResult, RemoteHost, TaskCallback, ansible, ssh


class _CancelFlag(threading.Event):
    """runner polls `is_set()`; ours asks the rollout whether the operator aborted."""

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        super().__init__()
        self._cancelled = cancelled

    def is_set(self) -> bool:
        return self._cancelled() or super().is_set()


class AnsiblePatcher:
    def __init__(self, output_dir: Path) -> None:
        # One directory per run: every host's full Ansible output is kept there.
        self.output_dir = output_dir

    def play(
        self,
        host: RemoteHost,
        playbook: str,
        extravars: Mapping[str, Any],
        on_task: TaskCallback,
        cancelled: Callable[[], bool],
    ) -> PatchResult:
        result = ansible.play(
            host,
            playbook,
            extravars,
            output_dir=self.output_dir,
            on_event=lambda event: on_task(event.task, event.status, event.msg),
            cancel=_CancelFlag(cancelled),
        )
        reboot = result.facts.get("rollup_reboot_required", True)
        if isinstance(reboot, str):
            reboot = reboot.strip().lower() not in ("false", "no", "0")
        message = result.message or (
            f"{host.name} is unreachable" if result.unreachable else f"status {result.status}"
        )
        return PatchResult(
            ok=result.ok,
            reboot_required=bool(reboot),
            failed_task=result.failed_task or "",
            message=message,
            output_tail=result.output_tail,
            output_file=str(result.output_file or ""),
        )

    def reachable(self, host: RemoteHost) -> bool:
        return ssh.reachable(host)

    def command(self, host: RemoteHost, line: str, timeout: float) -> tuple[int, str, str]:
        done = ssh.run(host, line, timeout)
        return done.rc, done.stdout, done.stderr
