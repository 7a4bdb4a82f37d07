"""The rollup command a user installed, for tests that run the CLI as a user does.

Never `python -m rollup`: run from the checkout, that imports the source tree.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

ROLLUP = str(Path(sysconfig.get_path("scripts")) / "rollup")


def rollup(*args: str) -> list[str]:
    """The argv running the installed `rollup` with `args`."""
    return [ROLLUP, *args]
