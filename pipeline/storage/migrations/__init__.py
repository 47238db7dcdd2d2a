"""Numbered, forward-only migrations, applied by the sink at start-up (idempotently).

Each module ``mNNNN_name.py`` has ``VERSION``, ``NAME`` and ``forward(settings) -> list[str]``.
Applied versions are recorded in ``_pulse_migrations``; a duplicate version number is an error.
After migrating, the configured retention is re-applied so changing ``PULSE_CLICKHOUSE_RAW_TTL_DAYS``
or ``PULSE_CLICKHOUSE_TTL_DAYS`` takes effect on existing tables.
"""

from __future__ import annotations

import importlib
import re
import pkgutil
from types import ModuleType
from typing import Any

from pipeline.settings import Settings
from pipeline.storage.tables import MIGRATIONS_TABLE, RETENTION_TABLES, check_retention


TTL_IN_ENGINE = re.compile(r"\bTTL toDateTime\((\w+)\) \+ toIntervalDay\((\d+)\)")


def discover() -> list[ModuleType]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
               if m.name.startswith("m")]
    versions = [m.VERSION for m in modules]
    dupes = sorted({v for v in versions if versions.count(v) > 1})
    if dupes:
        raise RuntimeError(f"duplicate migration versions: {dupes}")
    return sorted(modules, key=lambda m: m.VERSION)


def migrate(client: Any, settings: Settings) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    client.command(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
                   "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version")
    done = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for module in discover():
        if module.VERSION in done:
            continue
        for statement in module.forward(settings):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[module.VERSION, module.NAME]], column_names=["version", "name"])
        applied.append(f"{module.VERSION:04d}_{module.NAME}")
    apply_ttl(client, settings)
    return applied


def apply_ttl(client: Any, settings: Settings) -> list[str]:
    """Re-apply the configured retention where it differs; returns the tables altered.

    Only when it changed: MODIFY TTL rewrites TTL information of every part on a server
    (``materialize_ttl_after_modify``), too costly to run on every start-up.
    """
    check_retention(settings)
    engines = dict(client.query("SELECT name, engine_full FROM system.tables "
                                "WHERE database = currentDatabase()").result_rows)
    altered = []
    for table in RETENTION_TABLES:
        if table.name not in engines:
            continue
        current = TTL_IN_ENGINE.search(engines[table.name])
        days = table.retention_days(settings)
        if days is None:
            if current:
                client.command(f"ALTER TABLE {table.name} REMOVE TTL")
                altered.append(table.name)
        elif not current or (current.group(1), int(current.group(2))) != (table.time_column, days):
            client.command(f"ALTER TABLE {table.name} MODIFY TTL {table.ttl_clause(settings)}")
            altered.append(table.name)
    return altered
