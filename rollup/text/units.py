"""Sizes and durations as every part of rollup writes them: 1.5 GiB, 2m 05s."""

from __future__ import annotations

from rollup.model import GiB


def format_gib(size: int) -> str:
    return f"{size / GiB:.1f} GiB"


def format_duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
