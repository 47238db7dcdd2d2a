"""Where an analyst's query goes.

* A ClickHouse server is configured: straight to it.
* Embedded chDB and the sink is running: through the sink's read-only HTTP endpoint, because a
  chDB data directory can be opened by one process only and the sink owns it. Only if the sink's
  /health says it serves this settings' own data directory: another pipeline's sink on the port
  (two on one machine) is refused with both names, never silently read (``WrongSink``).
* Embedded chDB and nothing runs: open the data directory directly, read-only.

Writes are refused the same way everywhere: ``pipeline/storage/database.py`` and ``sql_policy.py``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pipeline.settings import Settings


class QueryError(Exception):
    """The query failed; the message is ClickHouse's own text."""


def sink_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.sink.host in ("0.0.0.0", "") else settings.sink.host
    return f"http://{host}:{settings.sink.port}/"


class WrongSink(QueryError):
    """The sink on the configured port serves other data than these settings name."""


def sink_serves(settings: Settings, timeout_s: float) -> str | None:
    """What the sink at ``sink_url`` says it serves (``clickhouse.serves`` in its /health), or None
    when it does not say (not a pulse sink, or an older one). Connection errors propagate."""
    try:
        with urllib.request.urlopen(sink_url(settings) + "health", timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:  # 503 unhealthy still names its data
        raw = exc.read()
    try:
        serves = json.loads(raw)["clickhouse"]["serves"]
    except (ValueError, KeyError, TypeError):
        return None
    return serves if isinstance(serves, str) else None


def check_sink_serves_own_data(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise ``WrongSink`` unless the sink on our port serves our own data (``data_identity``)."""
    own = settings.clickhouse.data_identity()
    theirs = sink_serves(settings, timeout_s)
    if theirs != own:
        said = theirs or "data it does not name (not a pulse sink, or an older one)"
        raise WrongSink(f"the sink at {sink_url(settings)} serves {said}, but these settings are for {own}: "
                        f"refusing to read another pipeline's data. Set PULSE_SINK_PORT to this pipeline's "
                        f"sink, or PULSE_CLICKHOUSE_PATH / PULSE_CLICKHOUSE_URL to the data that sink serves.")


def _via_sink(settings: Settings, sql: str, fmt: str, timeout_s: float, ch_settings: dict[str, Any]) -> str:
    params = urllib.parse.urlencode({**ch_settings, "default_format": fmt, "database": settings.clickhouse.database})
    key = settings.sink.sql_access_key
    headers = {"X-ClickHouse-Key": key.get_secret_value()} if key is not None else {}
    req = urllib.request.Request(sink_url(settings) + "?" + params, data=sql.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise QueryError(exc.read().decode("utf-8", "replace").strip() or str(exc)) from exc


def _direct(settings: Settings, sql: str, fmt: str, ch_settings: dict[str, Any]) -> str:
    """No sink in the way: the same parser checks and read-only handle as the sink's endpoint."""
    from pipeline.storage.database import Database, EngineError
    from pipeline.storage.sql_policy import SqlRefused

    db = Database(settings.clickhouse, settings.sink)
    try:
        answer = db.run_analyst_query(sql, fmt, {k: str(v) for k, v in ch_settings.items()},
                                      database=settings.clickhouse.database)
        return answer.body.decode("utf-8", "replace")
    except (SqlRefused, EngineError) as exc:
        raise QueryError(str(exc)) from exc
    finally:
        db.close()


class BackendUnavailable(QueryError):
    """Nothing can answer queries right now (the sink is not running, the server is down)."""


def run_query(settings: Settings, sql: str, fmt: str = "TabSeparated", timeout_s: float = 60.0,
              allow_direct: bool = True, ch_settings: dict[str, Any] | None = None) -> str:
    """Run one read-only query; returns the output in ClickHouse format ``fmt``.

    ``allow_direct=False`` for long-running processes (the collector's API): opening the embedded
    directory there would keep it from the sink, so they only ever go through the sink.
    ``ch_settings``: ClickHouse settings for this query (e.g. output format options)."""
    ch_settings = ch_settings or {}
    if not settings.clickhouse.embedded:
        return _direct(settings, sql, fmt, ch_settings)
    try:
        check_sink_serves_own_data(settings, min(timeout_s, 10.0))
        return _via_sink(settings, sql, fmt, timeout_s, ch_settings)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            if allow_direct:
                return _direct(settings, sql, fmt, ch_settings)  # no sink running: the directory is free
            raise BackendUnavailable(f"the sink (owner of the embedded ClickHouse) is not running at "
                                     f"{sink_url(settings)}") from exc
        raise BackendUnavailable(f"sink at {sink_url(settings)} did not answer: {exc.reason}") from exc
