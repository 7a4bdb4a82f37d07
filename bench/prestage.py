"""Pre-staging: each host's time out of service with and without downloading ahead.

    python bench/prestage.py

Two `rollup run --yes --json` of the same lab pool (XCP-ng, 6 hosts, 60 VMs, real sshd
per host, the updater plugin path, fresh lab each time from the same seed), side by side:
`rollup_prestage: false` (each host downloads its updates while out of service, as Xen
Orchestra's rolling pool update does) and `true` (every host downloads before the first
evacuation, all at once). The lab's mirror serves 4 MiB per lab second; a host's time out
of service runs from `disabling` to `enabling` in its events, in lab seconds (real
seconds times the lab's speed). The plan's estimate is shown for both with
rollup_download_seconds set to the lab's own download time of a host's updates.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

SPEED = 20.0
HOSTS, VMS, SEED = 6, 60, 11
DOWNLOAD_SECONDS = 15.0  # ~60 MiB of updates a host at the lab mirror's 4 MiB/s


def inventory(directory: Path, prestage: bool) -> Path:
    pool = {
        "vars": {
            "rollup_driver": "xenapi",
            "rollup_lab": {"hosts": HOSTS, "vms": VMS, "seed": SEED, "speed": SPEED},
            "rollup_reboot": "if-required",
            "rollup_unmovable": "shutdown-restart",
            "rollup_check_host_keys": False,
            "rollup_prestage": prestage,
            "rollup_patch_seconds": 5,
            "rollup_reboot_seconds": 100,
            "rollup_download_seconds": DOWNLOAD_SECONDS,
        },
        "hosts": {f"h{i}": None for i in range(1, HOSTS + 1)},
    }
    path = directory / f"lab-{'staged' if prestage else 'unstaged'}.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"lab": pool}}}))
    return path


def rollup(*args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("rollup")
    return subprocess.run(
        [str(command), *args], capture_output=True, text=True, timeout=1200, check=False
    )


def out_of_service(events: list[dict[str, Any]]) -> dict[str, float]:
    """Each host's lab seconds from disabling to enabling."""
    start: dict[str, float] = {}
    spans: dict[str, float] = {}
    for event in events:
        if event["kind"] != "host-state":
            continue
        if event["state"] == "disabling":
            start[event["host_name"]] = event["at"]
        elif event["state"] == "enabling" and event["host_name"] in start:
            spans[event["host_name"]] = (event["at"] - start[event["host_name"]]) * SPEED
    return spans


def measure(directory: Path, prestage: bool) -> tuple[dict[str, float], float, float]:
    path = inventory(directory, prestage)
    state = directory / f"state-{prestage}"
    plan = json.loads(
        rollup("plan", str(path), "--format", "json", "--state-dir", str(state)).stdout
    )
    ran = rollup("run", str(path), "--yes", "--json", "--state-dir", str(state))
    if ran.returncode != 0:
        raise SystemExit(f"rollup run failed: {ran.stderr[-2000:]}")
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    first, last = events[0]["at"], events[-1]["at"]
    return out_of_service(events), plan["estimate"]["total_seconds"], (last - first) * SPEED


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rollup-bench-") as tmp:
        unstaged, unstaged_estimate, unstaged_run = measure(Path(tmp), prestage=False)
        staged, staged_estimate, staged_run = measure(Path(tmp), prestage=True)
    hosts = sorted(set(unstaged) & set(staged))
    before = statistics.mean(unstaged[h] for h in hosts)
    after = statistics.mean(staged[h] for h in hosts)
    print(f"lab: {HOSTS} hosts, {VMS} VMs, x{SPEED:g}; {len(hosts)} hosts patched in both runs")
    print(
        f"  time out of service a host (mean, lab s): {before:,.1f} without pre-staging,"
        f" {after:,.1f} with ({before / after:.2f}x; {before - after:,.1f} s less)"
    )
    print(
        f"  whole run (lab s): {unstaged_run:,.0f} without, {staged_run:,.0f} with"
        f" ({unstaged_run / staged_run:.2f}x)"
    )
    print(
        f"  plan estimate: {unstaged_estimate:,.0f} s without, {staged_estimate:,.0f} s with"
        f" ({unstaged_estimate / staged_estimate:.2f}x)"
    )


if __name__ == "__main__":
    main()
