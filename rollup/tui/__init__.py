"""The Textual interface: the plan screen and the live dashboard of a run.

Nothing outside this package imports Textual; `rollup.commands` imports `rollup.tui.app`
only when it will show a screen, so pipeline runs and `--no-tui` never load it.
"""
