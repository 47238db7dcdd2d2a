"""One way to get a ClickHouse client: embedded chDB (default) or a server by URL."""

from __future__ import annotations

from typing import Any

import clickhouse_connect

from pipeline.settings import ClickHouseSettings


def connect(ch: ClickHouseSettings) -> Any:
    """A clickhouse-connect client on ``ch.database``, creating the database if needed.

    chDB allows one data directory per process and one process per directory: call this in the
    process that owns the directory (the sink), or when nothing else runs.
    """
    if ch.embedded:
        path = ch.path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    else:
        client = clickhouse_connect.get_client(dsn=ch.url)
    client.command(f"CREATE DATABASE IF NOT EXISTS {ch.database}")
    client.database = ch.database
    return client
