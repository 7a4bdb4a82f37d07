"""Control overhead: how fast rollup reacts, and what its patch step costs over Ansible.

    python bench/overhead.py

* Reaction: the delay between a host coming back (the lab's moment it becomes enabled
  and live, recorded by bench/recorder.py) and rollup acting on it (its journal's
  `verifying` transition, written as `wait_back` returns: rollup waits on XenAPI
  events, it does not poll). Wall milliseconds, both clocks on this machine. The XO-like
  baseline's figure (it polls every simulated second) is printed next to it.
* Patch step: rollup's `patching` state on a host (journal, wall seconds: ansible-runner,
  rollup's event handling, the reboot-required fact) against a bare `ansible-playbook`
  run of the same playbook on the same lab host over the same SSH.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import window


@dataclass(frozen=True)
class Overhead:
    reaction_ms: list[float]  # rollup, one per host
    baseline_reaction_ms: list[float]
    patch_s: list[float]  # rollup's patch step, one per host
    bare_ansible_s: list[float]

    @property
    def patch_ratio(self) -> float:
        return statistics.median(self.patch_s) / statistics.median(self.bare_ansible_s)


def _delays(run: window.RunResult) -> list[float]:
    return [
        (run.next_action_wall[host] - back) * 1000
        for host, back in run.back_wall.items()
        if host in run.next_action_wall
    ]


def from_window(results: list[window.PoolResult]) -> Overhead:
    """Overhead figures from the window benchmark's runs (no extra lab run)."""
    return Overhead(
        reaction_ms=[d for r in results for d in _delays(r.rollup)],
        baseline_reaction_ms=[d for r in results for d in _delays(r.baseline)],
        # Only runs over real sshd, where the bare ansible-playbook ran too.
        patch_s=[s for r in results if r.bare_ansible_wall for s in r.rollup.patch_wall],
        bare_ansible_s=[s for r in results for s in r.bare_ansible_wall],
    )


def measure() -> Overhead:
    case = window.cases(quick=True)[0]
    with tempfile.TemporaryDirectory(prefix="rollup-bench-") as tmp:
        rollout, bare = window.run_rollup(case, "upgraded-first", Path(tmp) / "rollup", 3)
        baseline_run = window.run_baseline(case, Path(tmp) / "baseline")
    result = window.PoolResult(case, baseline_run, {window.MAIN: rollout}, bare)
    return from_window([result])


def report(overhead: Overhead) -> None:
    med, worst = statistics.median(overhead.reaction_ms), max(overhead.reaction_ms)
    base = statistics.median(overhead.baseline_reaction_ms)
    print(
        f"Reaction to a host back (enabled+live -> next action): rollup median {med:.0f} ms,"
        f" max {worst:.0f} ms over {len(overhead.reaction_ms)} hosts"
        f" (baseline polling: median {base:.0f} ms)"
    )
    print(
        f"Patch step: rollup median {statistics.median(overhead.patch_s):.2f} s,"
        f" bare ansible-playbook median {statistics.median(overhead.bare_ansible_s):.2f} s"
        f" -> {overhead.patch_ratio:.2f}x"
    )


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
