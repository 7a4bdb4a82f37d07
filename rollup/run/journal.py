"""The journal: a SQLite (WAL) record of runs, their plans, host transitions and events.

It is what `rollup resume` trusts after a crash, so a transition is committed before the
action it announces starts. It lives under the user's state directory (0700, files 0600)
and holds pool data only: no credential ever reaches it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup.run.events import Event, MigrationProgress, to_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pool TEXT NOT NULL,
    pool_id TEXT NOT NULL,
    inventory TEXT NOT NULL,
    controller TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    state TEXT NOT NULL,
    outcome TEXT,
    message TEXT,
    plan TEXT NOT NULL,
    ha TEXT
);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    at REAL NOT NULL,
    host TEXT NOT NULL,
    host_name TEXT NOT NULL,
    state TEXT NOT NULL,
    previous TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS transitions_run ON transitions(run_id, host);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE TABLE IF NOT EXISTS notes (
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, host, key)
);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    command TEXT NOT NULL,
    host TEXT,
    taken INTEGER NOT NULL DEFAULT 0
);
"""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rollup"


@dataclass(frozen=True)
class RunRecord:
    id: str
    pool: str
    pool_id: str
    inventory: str
    controller: str
    pid: int
    started: float
    finished: float | None
    state: str
    outcome: str | None
    message: str | None
    plan: dict[str, Any]
    ha: dict[str, Any] | None


@dataclass(frozen=True)
class Transition:
    run_id: str
    at: float
    host: str
    host_name: str
    state: str
    previous: str
    detail: dict[str, Any]


class Journal:
    def __init__(self, state_dir: Path | str | None = None) -> None:
        self.dir = Path(state_dir) if state_dir else default_state_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.path = self.dir / "journal.sqlite"
        if not self.path.exists():
            # Create it 0600 before SQLite opens it, so it is never world-readable.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        pool: str,
        pool_id: str,
        inventory: str,
        controller: str,
        plan: dict[str, Any],
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, pool, pool_id, inventory, controller, pid, started,"
                " state, plan) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?)",
                (
                    run_id,
                    pool,
                    pool_id,
                    inventory,
                    controller,
                    os.getpid(),
                    time.time(),
                    json.dumps(plan),
                ),
            )

    def set_run_state(
        self, run_id: str, state: str, outcome: str | None = None, message: str | None = None
    ) -> None:
        finished = time.time() if outcome and outcome != "paused" else None
        with self._lock:
            self._db.execute(
                "UPDATE runs SET state = ?, outcome = COALESCE(?, outcome),"
                " message = COALESCE(?, message), finished = ?, pid = ? WHERE id = ?",
                (state, outcome, message, finished, os.getpid(), run_id),
            )

    def discard_run(self, run_id: str) -> None:
        """Forget a run that was never started (its plan was declined)."""
        with self._lock:
            for table in ("events", "transitions", "notes", "commands"):
                self._db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def set_ha(self, run_id: str, ha: dict[str, Any] | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET ha = ? WHERE id = ?",
                (json.dumps(ha) if ha is not None else None, run_id),
            )

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM runs WHERE id = ? OR id LIKE ? ORDER BY started DESC LIMIT 1",
                (run_id, run_id + "%"),
            ).fetchone()
        return _run_record(row) if row else None

    def runs(self, limit: int = 50) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_run_record(row) for row in rows]

    def latest_unfinished(self, pool: str | None = None) -> RunRecord | None:
        for record in self.runs(limit=500):
            if record.state not in ("completed", "failed", "aborted") and (
                pool is None or record.pool == pool
            ):
                return record
        return None

    # -- transitions --------------------------------------------------------------------

    def record_transition(
        self,
        run_id: str,
        host: str,
        host_name: str,
        state: str,
        previous: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO transitions (run_id, at, host, host_name, state, previous, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, time.time(), host, host_name, state, previous, json.dumps(detail or {})),
            )

    def transitions(self, run_id: str) -> list[Transition]:
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, at, host, host_name, state, previous, detail FROM transitions"
                " WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [Transition(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def host_states(self, run_id: str) -> dict[str, Transition]:
        """The last transition of every host in a run: where resume picks up."""
        last: dict[str, Transition] = {}
        for transition in self.transitions(run_id):
            last[transition.host] = transition
        return last

    # -- notes: facts an action must remember across a crash (e.g. the boot before reboot)

    def note(self, run_id: str, host: str, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO notes (run_id, host, key, value) VALUES (?, ?, ?, ?)",
                (run_id, host, key, json.dumps(value)),
            )

    def recall(self, run_id: str, host: str, key: str) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM notes WHERE run_id = ? AND host = ? AND key = ?",
                (run_id, host, key),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def recall_prefix(self, run_id: str, host: str, prefix: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM notes WHERE run_id = ? AND host = ? AND key LIKE ?",
                (run_id, host, prefix + "%"),
            ).fetchall()
        return {key[len(prefix) :]: json.loads(value) for key, value in rows}

    def forget(self, run_id: str, host: str, key: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM notes WHERE run_id = ? AND host = ? AND key = ?",
                (run_id, host, key),
            )

    # -- commands from other processes (`rollup approve RUN`, `rollup pause RUN`) ------

    def send_command(self, run_id: str, command: str, host: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO commands (run_id, at, command, host) VALUES (?, ?, ?, ?)",
                (run_id, time.time(), command, host),
            )

    def take_commands(self, run_id: str) -> list[tuple[str, str | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, command, host FROM commands WHERE run_id = ? AND taken = 0"
                " ORDER BY seq",
                (run_id,),
            ).fetchall()
            if rows:
                self._db.execute(
                    "UPDATE commands SET taken = 1 WHERE run_id = ? AND seq <= ?",
                    (run_id, rows[-1][0]),
                )
        return [(command, host) for _, command, host in rows]

    # -- events -------------------------------------------------------------------------

    def record_event(self, event: Event) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (run_id, at, kind, body) VALUES (?, ?, ?, ?)",
                (event.run_id, event.at, event.kind, to_json(event)),
            )

    def events(self, run_id: str, after: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            ).fetchall()
        for seq, body in rows:
            yield seq, json.loads(body)


class JournalSink:
    """Every event into the journal, but migration progress only at its milestones.

    Subscribe it as essential: when it fails the bus tells the rollout, which stops at
    its next safe point, since a run the journal does not know cannot be resumed.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __call__(self, event: Event) -> None:
        if isinstance(event, MigrationProgress) and event.status == "running":
            return
        self._journal.record_event(event)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        pool=row[1],
        pool_id=row[2],
        inventory=row[3],
        controller=row[4],
        pid=row[5],
        started=row[6],
        finished=row[7],
        state=row[8],
        outcome=row[9],
        message=row[10],
        plan=json.loads(row[11]),
        ha=json.loads(row[12]) if row[12] else None,
    )
