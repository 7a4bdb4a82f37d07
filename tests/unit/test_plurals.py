"""Counts read right for one and for many, in every rendering a person reads.

Real plans of tiny pools (one host, one VM, one migration, one batch) rendered as the
terminal table, the markdown ticket, the TUI's plan screen and host pane, `rollup status`
and the run's closing log line: none may say "1 hosts", nor fall back on "host(s)".
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console, RenderableType
from strategies import make_pool

from rollup.codec import to_data
from rollup.model import Plan, Policy
from rollup.output import report, status
from rollup.output.sinks import LogSink
from rollup.plan.planner import plan
from rollup.run.context import RunContext
from rollup.run.events import EventBus, RunFinished
from rollup.run.journal import Journal
from rollup.run.rollout import Rollout, RunOptions
from rollup.text.plurals import count, noun
from rollup.tui.plan_screen import plan_renderable
from rollup.tui.state import RunView
from rollup.tui.widgets.detail import render_host

WRONG = re.compile(r"\b1 (hosts|VMs|migrations|batches|checks)\b|\((s|es)\)")
T0 = 1_700_000_000.0


def text_of(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=240, color_system=None, force_terminal=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    # Soft-wrapped cells would hide a phrase across lines; one space each is enough.
    return re.sub(r"\s+", " ", output)


def one_host_pool_plan() -> Plan:
    """A pool of one host, nothing running: one host in one batch, no moves."""
    pool = make_pool({"h1": []}, halted=[2])
    return plan(pool, Policy(target_version="8.3.0"), now=T0)


def one_migration_plan() -> Plan:
    """h1 is already at the target; h2 hands its one VM to it, for good."""
    pool = make_pool({"h1": [], "h2": [2]}, versions={"h1": "8.3.0", "h2": "8.2.1"})
    return plan(pool, Policy(target_version="8.3.0", strategy="upgraded-first"), now=T0)


def refused_plan() -> Plan:
    """A lone host with a running VM has nowhere to put it: one check fails."""
    return plan(make_pool({"h1": [2]}), Policy(target_version="8.3.0"), now=T0)


def many_plan() -> Plan:
    pool = make_pool({"h1": [2, 2], "h2": [4], "h3": [2, 1]})
    return plan(pool, Policy(target_version="8.3.0", max_parallel_hosts=2), now=T0)


def run_summary(tiny: Plan, tmp_path: Path) -> str:
    """The rollout's own closing summary, with every host of `tiny` done."""
    journal = Journal(tmp_path / "state")
    ctx = RunContext(
        run_id="r1",
        driver=None,  # type: ignore[arg-type]  # no step runs: only the summary is read
        patcher=None,  # type: ignore[arg-type]
        journal=journal,
        bus=EventBus(),
        policy=tiny.policy,
        remotes={},
        migrations=tiny.migrations,
    )
    rollout = Rollout(ctx, tiny, RunOptions())
    for upgrade in rollout.hosts.values():
        upgrade.machine.set_state("done", model=upgrade)
    return rollout._summary()


def status_text(tiny: Plan, message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    journal = Journal(tmp_path / "status")
    journal.create_run("r1", tiny.pool.name, tiny.pool.id, "inv.yml", "ops-1", to_data(tiny))
    journal.set_run_state("r1", "completed", "completed", message)
    record = journal.run("r1")
    assert record is not None
    capsys.readouterr()
    status.print_status(journal, record, as_json=False, watch=False)
    return capsys.readouterr().out


def renderings(tiny: Plan, tmp_path: Path, capsys: pytest.CaptureFixture) -> dict[str, str]:
    summary = run_summary(tiny, tmp_path)
    finished = RunFinished("r1", "completed", 0, summary, len(tiny.steps), 0, 0, 1, 9.0)
    view = RunView(tiny, run_id="r1")
    return {
        "table": text_of(report.plan_table(tiny)),
        "markdown": report.plan_markdown(tiny),
        "plan screen": text_of(plan_renderable(tiny)),
        "host pane": " ".join(text_of(render_host(h, T0)) for h in view.hosts.values()),
        "run summary": LogSink(io.StringIO()).format(finished) or "",
        "status": status_text(tiny, summary, tmp_path, capsys),
    }


def assert_reads_right(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        wrong = WRONG.search(text)
        assert wrong is None, f"{name} says {wrong[0]!r}: {text}"


def test_a_one_host_pool_reads_in_the_singular(tmp_path, capsys):
    texts = renderings(one_host_pool_plan(), tmp_path, capsys)
    assert_reads_right(texts)
    markdown = texts["markdown"]
    assert "1 of 1 host to upgrade in 1 batch," in markdown
    assert "up to 1 host at once" in markdown
    assert "| hosts-live | 1 host is live |" in markdown
    assert "1 host to upgrade to 8.3.0, 0 already there" in markdown
    assert "1 batch, 0 migrations," in markdown
    assert "1 of 1 host in 1 batch ·" in texts["plan screen"]
    assert "0 VMs out, 0 back" in texts["host pane"]
    assert texts["run summary"].startswith("run      completed: 1 host upgraded, 0 skipped")
    assert "1 host upgraded" in texts["status"]


def test_one_migration_of_one_vm_reads_in_the_singular(tmp_path, capsys):
    texts = renderings(one_migration_plan(), tmp_path, capsys)
    assert_reads_right(texts)
    markdown = texts["markdown"]
    assert "1 of 2 hosts to upgrade in 1 batch," in markdown
    assert "; 1 migration (2.0 GiB);" in markdown
    assert "| 1 VM, 2.0 GiB |" in markdown
    assert "1 host to upgrade to 8.3.0, 1 already there" in markdown
    assert "1 batch, 1 migration, 2.0 GiB moved" in markdown
    assert "1 VM, 2.0 GiB" in texts["table"]
    assert "1 live migration (2.0 GiB)" in texts["plan screen"]
    assert "1 VM out, 0 back" in texts["host pane"]
    assert "1 host upgraded, 1 skipped, 1 live migration," in texts["run summary"]


def test_one_failing_check_reads_in_the_singular(tmp_path, capsys):
    texts = renderings(refused_plan(), tmp_path, capsys)
    assert_reads_right(texts)
    assert "REFUSED: failing check capacity." in texts["markdown"]
    assert "REFUSED: failing check capacity." in texts["table"]
    assert "1 check fails, so nothing may start" in texts["plan screen"]


def test_many_read_in_the_plural(tmp_path, capsys):
    texts = renderings(many_plan(), tmp_path, capsys)
    assert_reads_right(texts)
    markdown = texts["markdown"]
    assert "3 of 3 hosts to upgrade in 2 batches," in markdown
    assert "up to 2 hosts at once" in markdown
    assert "all 3 hosts are live" in markdown
    assert "3 hosts to upgrade to 8.3.0" in markdown
    assert "| 2 VMs, 4.0 GiB |" in markdown
    assert "3 of 3 hosts in 2 batches ·" in texts["plan screen"]
    assert "live migrations (" in texts["plan screen"]
    assert "3 hosts upgraded" in texts["run summary"]
    assert "3 hosts upgraded" in texts["status"]


@pytest.mark.parametrize(
    ("n", "singular", "expected"),
    [
        (1, "host", "1 host"),
        (2, "host", "2 hosts"),
        (0, "VM", "0 VMs"),
        (1, "VM", "1 VM"),
        (1, "batch", "1 batch"),
        (3, "batch", "3 batches"),
        (2, "live migration", "2 live migrations"),
        (2, "policy", "2 policies"),
        (2, "day", "2 days"),
    ],
)
def test_count_says_the_number_and_the_word_that_goes_with_it(n, singular, expected):
    assert count(n, singular) == expected


def test_an_irregular_plural_is_given():
    assert noun(2, "person", "people") == "people"
    assert noun(1, "person", "people") == "person"
