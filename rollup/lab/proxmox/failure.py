"""The error a lab PVE API call answers with: an HTTP status, its reason, per-field errors.

Proxmox puts the message in the HTTP reason phrase (proxmoxer shows it as the content of
its ResourceException) and parameter errors in the body's `errors` object.
"""

from __future__ import annotations


class PveFailure(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        self.status = status
        # A reason phrase is one line.
        self.message = " ".join(message.split())
        self.errors = errors
        super().__init__(status, self.message)
