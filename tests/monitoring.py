"""A real Prometheus server (Debian's `prometheus`) scraping a lab's hosts, for tests.

Each lab host answers GET /metrics; Prometheus scrapes them every second and evaluates
an alert rule every second: LabHostAlarm fires while a host's `alarm` fault is set.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

PROMETHEUS = "/usr/bin/prometheus"
RULES = {
    "groups": [
        {
            "name": "lab",
            "rules": [
                {
                    "alert": "LabHostAlarm",
                    "expr": "rollup_lab_host_alarm == 1",
                    "labels": {"severity": "critical"},
                }
            ],
        }
    ]
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, directory: Path, targets: list[str]) -> None:
        assert shutil.which("prometheus") or Path(PROMETHEUS).exists(), (
            "prometheus is needed: apt-get install -y prometheus (.ci/run does)"
        )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rules.yml").write_text(yaml.safe_dump(RULES))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(directory / "rules.yml")],
            "scrape_configs": [{"job_name": "lab", "static_configs": [{"targets": targets}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(directory / "prometheus.log").open("w"),
            stdin=subprocess.DEVNULL,
        )
        self.wait(lambda: self._get("/-/ready") is not None, "ready")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                return reply.read()
        except OSError:
            return None

    def firing(self) -> set[str]:
        answer = self._get("/api/v1/alerts")
        alerts = json.loads(answer)["data"]["alerts"] if answer else []
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    def wait(self, done: object, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            assert self.process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"prometheus never got {what}"
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
