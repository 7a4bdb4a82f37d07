"""A lab host's small files (versions, boot id, keys, pid files): read whole, written atomically.

The pool, a playbook and the host's daemons read these while others write them: a reader
must never see half a file.
"""

from __future__ import annotations

from pathlib import Path


def read_value(path: Path) -> str | None:
    """The file's text, stripped; None if it is missing or empty."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically, so a reader (the pool, a playbook) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(mode)
    partial.replace(path)
