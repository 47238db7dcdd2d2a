"""Forgetting a user: every row that holds their identifiers, or belongs to one of their sessions.

``forget_user`` finds the user's sessions (rows whose ``user_id`` or ``anonymous_id`` is the given
id), then deletes, in every table with such columns, the rows of that user or of those sessions
(page views, rage and dead clicks carry only the session), and the dead letters whose raw payload
mentions the id. Deletes are ClickHouse mutations waited for (``mutations_sync = 2``).

What it cannot reach, by design: aggregates hold no identifiers (rollups count events; the issues'
``affected_users`` is a ``uniq`` state of hashes, so the count may still include the user until it
ages out), and Kafka topics keep raw events until their retention.
"""

from __future__ import annotations

from typing import Any

IDENTITY_COLUMNS = ("user_id", "anonymous_id")
SESSION_CHUNK = 1000


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tables(client: Any) -> dict[str, set[str]]:
    """Base tables of the current database -> their identity/session columns (views excluded)."""
    rows = client.query(
        "SELECT c.table, c.name FROM system.columns AS c JOIN system.tables AS t "
        "ON c.database = t.database AND c.table = t.name WHERE c.database = currentDatabase() "
        "AND t.engine NOT IN ('View', 'MaterializedView') AND c.name IN ('user_id', 'anonymous_id', 'session_id')"
    ).result_rows
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def forget_user(client: Any, user_id: str) -> dict[str, int]:
    """Delete everything of ``user_id``; returns the rows deleted per table (tables without any left out)."""
    if not user_id or not user_id.strip():
        raise ValueError("user_id must not be empty")
    uid = _quote(user_id)
    tables = _tables(client)
    sessions: set[str] = set()
    for table, columns in tables.items():
        ids = [c for c in IDENTITY_COLUMNS if c in columns]
        if ids and "session_id" in columns:
            where = " OR ".join(f"{c} = {uid}" for c in ids)
            sessions |= {r[0] for r in client.query(f"SELECT DISTINCT session_id FROM {table} WHERE {where}").result_rows}
    session_list = sorted(s for s in sessions if s)
    deleted: dict[str, int] = {}
    for table, columns in sorted(tables.items()):
        conditions = [f"{c} = {uid}" for c in IDENTITY_COLUMNS if c in columns]
        if "session_id" in columns:
            for i in range(0, len(session_list), SESSION_CHUNK):
                chunk = ", ".join(map(_quote, session_list[i:i + SESSION_CHUNK]))
                conditions.append(f"session_id IN ({chunk})")
        if conditions:
            _delete(client, table, " OR ".join(conditions), deleted)
    if client.query("EXISTS TABLE dead_letters").result_rows[0][0]:
        _delete(client, "dead_letters", f"position(payload, {uid}) > 0", deleted)
    return deleted


def _delete(client: Any, table: str, where: str, deleted: dict[str, int]) -> None:
    n = int(client.query(f"SELECT count() FROM {table} WHERE {where}").result_rows[0][0])
    if n:
        client.command(f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 2")
        deleted[table] = n
