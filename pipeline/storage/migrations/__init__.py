"""Numbered, forward-only migrations, applied by the sink at start-up (idempotently).

Each module ``mNNNN_name.py`` has ``VERSION``, ``NAME`` and ``forward(settings) -> list[str]``.
Applied versions are recorded in ``_pulse_migrations``; a duplicate version number is an error.
After migrating, the configured TTL is re-applied so changing ``PULSE_CLICKHOUSE_RAW_TTL_DAYS``
takes effect on existing tables.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from pipeline.settings import Settings
from pipeline.storage.tables import ALL_TABLES, MIGRATIONS_TABLE


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
    engines = dict(client.query("SELECT name, engine_full FROM system.tables "
                                "WHERE database = currentDatabase()").result_rows)
    days = settings.clickhouse.raw_ttl_days
    altered = []
    for table in ALL_TABLES:
        if not table.ttl_column or table.internal:
            continue
        if f"TTL toDateTime({table.ttl_column}) + toIntervalDay({days})" in engines.get(table.name, ""):
            continue
        client.command(f"ALTER TABLE {table.name} MODIFY TTL toDateTime({table.ttl_column}) + INTERVAL {days} DAY")
        altered.append(table.name)
    return altered
