"""Notifications through Apprise, received by a real local HTTP endpoint (Apprise json://).

A run with a failing host notifies its start, the host's failure with its evidence, its
pause and its end; a second target that cannot be reached is said to have failed, the
run going on; the secret in that target's URL appears nowhere rollup writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.rollout.conftest import Lab
from tests.rollout.reports import valid_events

SECRET = "n0tify-s3cret-token"


class Receiver:
    """An HTTP endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def test_a_run_notifies_its_start_a_failed_host_its_pause_and_its_end(lab: Lab, receiver):
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    gone = f"json://rollup:{SECRET}@127.0.0.1:1/nobody-listens"
    inventory = lab.write_inventory(
        rollup_notify=[f"json://127.0.0.1:{receiver.port}/rollup", gone]
    )
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui", "--json")
    assert result.returncode == 5, result.stderr
    titles = [n["title"] for n in receiver.received]
    pool = titles[0].removeprefix("rollup: ").removesuffix(" started")
    assert titles == [
        f"rollup: {pool} started",
        f"rollup: {pool}: h2 failed",
        f"rollup: {pool} paused",
        f"rollup: {pool} paused",
    ]
    assert {n["path"] for n in receiver.received} == {"/rollup"}
    failed = receiver.received[1]
    assert failed["type"] == "failure"
    assert failed["message"].startswith("h2 failed: patch playbook failed")
    assert "lab fault fail-patch is set" in failed["message"]  # the evidence lines
    # The target nobody listens to: said once per notification, named without its secret.
    said = [
        e["text"] for e in valid_events(result.stdout) if e["kind"] == "message"
        and "to json://127.0.0.1 failed" in e["text"]
    ]  # fmt: skip
    assert len(said) == 4 and all(text.endswith("; the run goes on") for text in said)
    journal = (lab.state / "journal.sqlite").read_bytes()
    assert SECRET not in result.stdout + result.stderr
    assert SECRET.encode() not in journal


def test_a_url_apprise_cannot_use_is_bad_input_before_anything_changes(lab: Lab):
    before = lab.snapshot()
    inventory = lab.write_inventory(rollup_notify=[f"nosuch://{SECRET}@example.org/"])
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "rollup: rollup_notify: URL 1 (nosuch://...) is not one Apprise can send to: check"
        " its scheme and fields in Apprise's list"
    )
    assert SECRET not in result.stderr
    assert lab.snapshot() == before
