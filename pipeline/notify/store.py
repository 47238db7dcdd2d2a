"""The notifier's durable state: one SQLite file (stdlib ``sqlite3``, WAL) with three tables.

* ``state``: one row, the ``NotifierState`` JSON (alerts, groups, silences, incidents, seen event
  ids, the intent ledger);
* ``outbox``: one row per ``Intent`` (``intent_id`` primary key), with its delivery status
  (``pending`` / ``done`` / ``failed``), ``attempts``, ``next_attempt_at`` (epoch ms) and the last error;
* ``offsets``: the next Kafka offset to read per (topic, partition) — the source of truth for the
  consumer, which seeks to it on assignment.

Every change the notifier makes goes through ``transaction()``: the state, the intents it produced
and the offsets of the records that produced them are written together or not at all, so a process
killed at any instant restarts from a consistent point (see ``pipeline/notify/service.py``).

The outbox stores the intent, not the HTTP request: intents hold no URL or key, and are rendered
with the config of the moment they are sent (``payloads.render``), so no secret is written to disk
and a fixed receiver URL applies to entries still waiting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.notify.engine import Intent, NotifierState

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    doc BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    intent_id TEXT PRIMARY KEY,
    receiver TEXT NOT NULL,
    kind TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    intent BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


@dataclass(frozen=True)
class OutboxRow:
    intent_id: str
    receiver: str
    kind: str
    incident_id: str
    intent: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: int
    created_at: int
    last_error: str
    seq: int  # insertion order (SQLite rowid)

    def to_intent(self) -> Intent:
        return Intent.from_json(self.intent)

    @property
    def lane(self) -> tuple[str, str]:
        """Entries of one lane are sent one after the other, in order: a receiver must not get an
        incident's resolve before its trigger (PagerDuty would keep the incident open)."""
        return self.receiver, self.incident_id


class NotifierStore:
    """One connection, used from the event loop's thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; ``transaction()`` opens them explicitly
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a page decided is on disk before it is sent
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer notifier (schema {row[0]} > {SCHEMA_VERSION})")
        self._saved: bytes | None = None
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception (re-raised)."""
        if self._depth:
            raise RuntimeError("nested transaction")
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        saved = self._saved
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._saved = saved
            raise
        finally:
            self._depth = 0

    # -- state ------------------------------------------------------------------------------------

    def load_state(self) -> NotifierState:
        row = self.db.execute("SELECT doc FROM state WHERE id = 1").fetchone()
        if row is None:
            self._saved = None
            return NotifierState()
        self._saved = bytes(row[0])
        return NotifierState.from_json(orjson.loads(row[0]))

    def save_state(self, state: NotifierState, now_ms: int) -> bool:
        """Write the state (inside a transaction) unless it equals what is stored; True if written."""
        doc = orjson.dumps(state.to_json())
        if doc == self._saved:
            return False
        self.db.execute("INSERT INTO state (id, doc, updated_at) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                        (doc, now_ms))
        self._saved = doc
        return True

    # -- offsets ----------------------------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(t, int(p)): int(o) for t, p, o in self.db.execute("SELECT topic, partition, next_offset FROM offsets")}

    def set_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        self.db.executemany("INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
                            "max(next_offset, excluded.next_offset)",
                            [(t, p, o) for (t, p), o in offsets.items()])

    # -- outbox -----------------------------------------------------------------------------------

    def add_intents(self, intents: Iterable[Intent], now_ms: int) -> int:
        """Insert new intents as pending, due now; an id already present is left alone. Returns how many were new."""
        added = 0
        for intent in intents:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO outbox (intent_id, receiver, kind, incident_id, intent, status, attempts, "
                "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                (intent.intent_id, intent.receiver, intent.kind, intent.incident_id, orjson.dumps(intent.to_json()),
                 now_ms, now_ms, now_ms))
            added += cur.rowcount
        return added

    def pending(self) -> list[OutboxRow]:
        """Pending entries in insertion order."""
        return [self._row(r) for r in self.db.execute(
            "SELECT rowid, intent_id, receiver, kind, incident_id, intent, status, attempts, next_attempt_at, "
            "created_at, last_error FROM outbox WHERE status = 'pending' ORDER BY rowid")]

    def get(self, intent_id: str) -> OutboxRow | None:
        r = self.db.execute("SELECT rowid, intent_id, receiver, kind, incident_id, intent, status, attempts, "
                            "next_attempt_at, created_at, last_error FROM outbox WHERE intent_id = ?",
                            (intent_id,)).fetchone()
        return None if r is None else self._row(r)

    def entries(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        sql = ("SELECT rowid, intent_id, receiver, kind, incident_id, intent, status, attempts, next_attempt_at, "
               "created_at, last_error FROM outbox")
        args: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        return [self._row(r) for r in self.db.execute(sql + " ORDER BY rowid DESC LIMIT ?", (*args, limit))]

    def finish(self, intent_id: str, status: str, attempts: int, now_ms: int, error: str = "") -> None:
        """``done`` or ``failed`` (inside a transaction)."""
        if status not in ("done", "failed"):
            raise ValueError(f"finish: status must be done or failed, got {status!r}")
        self.db.execute("UPDATE outbox SET status = ?, attempts = ?, updated_at = ?, last_error = ? "
                        "WHERE intent_id = ?", (status, attempts, now_ms, error[:1000], intent_id))

    def reschedule(self, intent_id: str, attempts: int, next_attempt_at: int, now_ms: int, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, updated_at = ?, last_error = ? "
                        "WHERE intent_id = ?", (attempts, next_attempt_at, now_ms, error[:1000], intent_id))

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "done": 0, "failed": 0}
        out.update({s: int(n) for s, n in self.db.execute("SELECT status, count(*) FROM outbox GROUP BY status")})
        return out

    def prune(self, before_ms: int) -> int:
        """Forget finished entries last updated before ``before_ms`` (the state's ledger keeps their ids)."""
        return self.db.execute("DELETE FROM outbox WHERE status IN ('done', 'failed') AND updated_at < ?",
                               (before_ms,)).rowcount

    @staticmethod
    def _row(r: tuple[Any, ...]) -> OutboxRow:
        seq, intent_id, receiver, kind, incident_id, intent, status, attempts, next_at, created, error = r
        return OutboxRow(intent_id, receiver, kind, incident_id, orjson.loads(intent), status, int(attempts),
                         int(next_at), int(created), error, int(seq))
