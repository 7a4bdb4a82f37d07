"""The run's timeline as an SVG chart (matplotlib): every host's states over time, its
waits on health gates, its failures, and every live migration between hosts.

Text stays text in the SVG (svg.fonttype "none"), so a browser can search it and a test
can read it; the same run always draws the same file (a fixed hash salt, no dates).
"""

from __future__ import annotations

import io

from rollup.output.run_story import RunStory

# A colour per state a host spends time in; the others (pending, done) are not drawn.
COLOURS = {
    "checking": "#9ecae1",
    "disabling": "#c6dbef",
    "evacuating": "#fdae6b",
    "patching": "#6baed6",
    "rebooting": "#756bb1",
    "verifying": "#74c476",
    "enabling": "#a1d99b",
    "restoring": "#fd8d3c",
    "failed": "#de2d26",
}
WAIT = "#cb181d"
ROW = 0.7  # bar height, of a row's 1.0


def svg(story: RunStory) -> str:
    """The chart as an SVG document's <svg> element (no XML prolog: it goes inline)."""
    import matplotlib  # the report only: it takes most of a second to import

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "rollup"})
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    hosts = [h for h in story.hosts if h.states]
    rows = {h.name: i for i, h in enumerate(hosts)}
    figure = Figure(figsize=(11, 1.8 + 0.45 * max(1, len(hosts))))
    axes = figure.subplots()
    t0 = story.start
    for host in hosts:
        y = rows[host.name]
        for state, since, until in host.states:
            if state in COLOURS:
                span = [(since - t0, max(until - since, 0.05))]
                axes.broken_barh(
                    span,
                    (y - ROW / 2, ROW),
                    facecolors=COLOURS[state],
                    edgecolor="white",
                    linewidth=0.3,
                )
        for since, until, _, _ in host.waits:
            span = [(since - t0, max(until - since, 0.05))]
            axes.broken_barh(
                span,
                (y - ROW / 2, ROW),
                facecolors="none",
                edgecolor=WAIT,
                hatch="////",
                linewidth=1,
            )
        for failure in host.failures:
            axes.plot([failure.at - t0], [y], marker="x", color=WAIT, markersize=9, mew=2)
    for move in story.migrations:
        if move.source in rows and move.dest in rows:
            colour = "#555555" if move.ok else WAIT
            axes.annotate(
                "",
                xy=(move.end - t0, rows[move.dest]),
                xytext=(move.start - t0, rows[move.source]),
                arrowprops={"arrowstyle": "->", "color": colour, "alpha": 0.35, "linewidth": 0.6},
            )
    axes.set_yticks(list(rows.values()), list(rows))
    axes.set_ylim(len(hosts) - 0.5, -0.5)
    axes.set_xlim(0, max(story.end - t0, 1.0))
    axes.set_xlabel("seconds since the run started")
    axes.grid(axis="x", linewidth=0.3, alpha=0.5)
    outcome = story.record.outcome or story.record.state
    axes.set_title(f"Run {story.record.id}, pool {story.record.pool}: {outcome}", loc="left")
    legend = [Patch(facecolor=colour, label=state) for state, colour in COLOURS.items()]
    legend.append(
        Patch(facecolor="none", edgecolor=WAIT, hatch="////", label="waiting on a health gate")
    )
    axes.legend(
        handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
