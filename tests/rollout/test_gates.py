"""Health gates around each host: a real Prometheus alert holds the run, notified; HTTP and
command gates; a gate that never passes fails its host before anything moves."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollup.model import Gate
from rollup.run.gates import ask
from tests.browser import render
from tests.monitoring import Prometheus
from tests.rollout.conftest import Lab, read_events
from tests.rollout.reports import valid_events
from tests.rollout.test_notify import Receiver

ALARM = {"hosts": {"h3": {"alarm": True}}}


@pytest.fixture
def prometheus(roomy_lab: Lab, tmp_path: Path) -> Iterator[Prometheus]:
    running = roomy_lab.running
    port = running.server.port
    targets = [f"{host.address}:{port}" for host in running.pool.hosts.values()]
    server = Prometheus(tmp_path / "prometheus", targets)
    yield server
    server.stop()


def outcome_of(dom: str) -> str:
    found = re.search(r'<p class="outcome [^"]*" id="outcome">([^<]*)</p>', dom)
    assert found, "the report says how the run ended"
    return found[1]


def host_row(dom: str, host: str) -> str:
    found = re.search(rf'<tr data-host="{host}">(.*?)</tr>', dom, re.S)
    assert found, f"the report has a row for {host}"
    return found[1]


def red_pixels(png: Path) -> int:
    """Pixels of the timeline's red (waits, failures) in a screenshot."""
    import numpy
    from PIL import Image

    with Image.open(png) as image:
        rgb = numpy.asarray(image.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    return int(red.sum())


def test_a_firing_alert_holds_the_run_which_says_so_and_goes_on_once_it_resolves(
    roomy_lab: Lab, prometheus: Prometheus, tmp_path: Path
):
    lab = roomy_lab
    receiver = Receiver()
    try:
        lab.set_faults(ALARM)
        prometheus.wait(lambda: "LabHostAlarm" in prometheus.firing(), "the alert firing")
        gates = {
            "before_host": [{"prometheus": prometheus.url, "alerts": "^LabHostAlarm$"}],
            "timeout": "120s",
            "interval": "1s",
        }
        inventory = lab.write_inventory(
            rollup_gates=gates, rollup_notify=[f"json://127.0.0.1:{receiver.port}/hook"]
        )
        child = lab.start_rollup("run", str(inventory), "--yes", "--no-tui", "--json")
        assert child.stdout is not None
        first = read_events(child.stdout, lambda e: e["kind"] == "gate" and not e["ok"])
        held = first[-1]
        assert (held["host_name"], held["phase"]) == ("h1", "before_host")
        assert held["reason"] == "alerts firing: LabHostAlarm"
        assert not any(e["kind"] == "host-state" and e["state"] == "disabling" for e in first)
        lab.set_faults({})  # the alarm clears; Prometheus resolves the alert
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err
        events = [*first, *valid_events(out)]
        passed = [e for e in events if e["kind"] == "gate" and e["ok"]]
        assert [e["host_name"] for e in passed] == ["h1"] and passed[0]["waited"] > 0
        assert "h1       waits on health gate prometheus" in err
        waits = [n for n in receiver.received if "waits on a health gate" in n["title"]]
        assert len(waits) == 1 and "alerts firing: LabHostAlarm" in waits[0]["message"]
    finally:
        receiver.close()
    # The report draws the wait on the timeline: h1's hatched bar, seen by a browser.
    run_id = held["run_id"]
    page = tmp_path / "report.html"
    made = lab.rollup("report", run_id, "-o", str(page))
    assert made.returncode == 0, made.stderr
    dom, shot = render(page, tmp_path)
    assert "completed" in outcome_of(dom)
    assert f"on prometheus {prometheus.url}" in host_row(dom, "h1")
    assert host_row(dom, "h2").endswith("<td>-</td>"), "h2 waited on nothing"
    hatched = re.findall(r"fill: url\(#h[0-9a-f]+\)", dom)
    assert len(hatched) >= 2, "the legend's hatch and h1's wait"
    assert red_pixels(shot) > 200


def test_a_gate_that_never_passes_fails_its_host_before_anything_moves(roomy_lab: Lab):
    lab = roomy_lab
    before = lab.snapshot()
    gates = {"before_host": [{"command": "false"}], "timeout": "2s", "interval": "1s"}
    result = lab.rollup("run", str(lab.write_inventory(rollup_gates=gates)), "--yes", "--no-tui")
    assert result.returncode == 5, result.stderr
    assert (
        "h1       checking FAILED: health gate command (before host) still fails" in result.stderr
    )
    after = lab.snapshot()
    assert (after.hosts, after.vms) == (before.hosts, before.vms), "nothing moved"


class Health:
    """An HTTP endpoint answering a status and a body that tests set."""

    def __init__(self) -> None:
        self.status, self.body = 200, json.dumps({"ok": True})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_http_and_command_gates_answer_what_they_saw(tmp_path: Path):
    health = Health()
    try:
        gate = Gate("http", health.url, match='"ok": true')
        assert ask(gate, "pool", "h1", "before_host") == ""
        health.body = json.dumps({"ok": False})
        assert ask(gate, "pool", "h1", "before_host") == (
            "answered 200 without '\"ok\": true' in its body"
        )
        health.status = 503
        assert ask(gate, "pool", "h1", "before_host") == "answered 503, not 200"
    finally:
        health.server.shutdown()
    script = tmp_path / "check"
    script.write_text(
        '#!/bin/sh\necho "checked $ROLLUP_HOST of $ROLLUP_POOL at $ROLLUP_GATE"\nexit 3\n'
    )
    script.chmod(0o755)
    assert ask(Gate("command", str(script)), "prod", "h2", "after_host") == (
        "exited 3: checked h2 of prod at after_host"
    )
    refused = ask(Gate("prometheus", "http://127.0.0.1:1"), "pool", "h1", "before_host")
    assert refused.startswith("could not be asked (")
