"""Tables and migrations on real chDB; the DDL snapshot matches the code.

chDB opens one data directory per process, so everything that opens one runs in a child process:
this pytest process may host other tests that hold their own chDB directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.storage.tables import ALL_TABLES, SCHEMAS_DIR, render_ddl

pytestmark = pytest.mark.integration

MIGRATE_TWICE = textwrap.dedent("""
    import json, sys
    from pipeline.settings import ClickHouseSettings, Settings
    from pipeline.storage.clickhouse import connect
    from pipeline.storage.migrations import migrate

    path = sys.argv[1]
    out = {}
    for run, ttl in (("first", 30), ("again", 30), ("ttl_changed", 7)):
        settings = Settings(clickhouse=ClickHouseSettings(path=path, raw_ttl_days=ttl))
        client = connect(settings.clickhouse)
        try:
            out[run] = migrate(client, settings)
        finally:
            client.close()
    settings = Settings(clickhouse=ClickHouseSettings(path=path, raw_ttl_days=7))
    client = connect(settings.clickhouse)
    try:
        out["tables"] = {name: engine for name, engine in client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = 'pulse'").result_rows}
        out["versions"] = [r[0] for r in client.query("SELECT version FROM _pulse_migrations ORDER BY version").result_rows]
    finally:
        client.close()
    print(json.dumps(out))
""")


def _run_child(code: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_migrations_create_every_table_once_and_reapply_a_changed_ttl(tmp_path: Path) -> None:
    out = _run_child(MIGRATE_TWICE, str(tmp_path / "chdb"))
    assert out["first"] == ["0001_initial", "0002_sessions", "0003_rollups", "0004_error_groups", "0005_issue_status",
                            "0006_custom_metrics", "0007_alerts"]
    assert out["again"] == []  # idempotent: nothing re-applied, nothing recorded twice
    assert out["versions"] == [1, 2, 3, 4, 5, 6, 7]
    views = {"page_ux_minute", "rollups_hour_mv", "rollups_day_mv", "issue_stats_mv", "issues", "metrics_hour_mv",
             "metrics_day_mv"}
    assert set(out["tables"]) == {t.name for t in ALL_TABLES} | {"_pulse_migrations"} | views
    for table in ("errors", "vitals", "actions", "api_calls", "metrics", "dead_letters"):
        engine = out["tables"][table]
        assert engine.startswith("MergeTree") and "non_replicated_deduplication_window = 10000" in engine
        assert "toIntervalDay(7)" in engine, engine  # the new retention replaced 30 days
    assert "TTL" not in out["tables"]["_pulse_sink_marks"]  # marks must outlive the raw rows they guard


RETENTION = textwrap.dedent("""
    import json, sys
    from pipeline.settings import ClickHouseSettings, Settings
    from pipeline.storage.clickhouse import connect
    from pipeline.storage.migrations import apply_ttl, migrate

    path = sys.argv[1]
    out = {}

    def engines(client):
        return {n: e for n, e in client.query("SELECT name, engine_full FROM system.tables "
                                              "WHERE database = 'pulse'").result_rows}

    per_table = {"sessions": 180, "rollups_minute": 14, "alerts": 60, "errors": 0}
    settings = Settings(clickhouse=ClickHouseSettings(path=path, ttl_days=per_table))
    client = connect(settings.clickhouse)
    try:
        migrate(client, settings)
        out["configured"] = engines(client)
        out["again"] = apply_ttl(client, settings)
        # rows older than the retention go at the next merge; recent ones stay
        client.command("INSERT INTO rollups_minute (project, minute, pageviews) VALUES "
                       "('old', now() - INTERVAL 20 DAY, 1), ('new', now() - INTERVAL 1 DAY, 1)")
        client.command("OPTIMIZE TABLE rollups_minute FINAL")
        out["rollup_projects"] = [r[0] for r in client.query("SELECT project FROM rollups_minute ORDER BY project").result_rows]
        defaults = Settings(clickhouse=ClickHouseSettings(path=path))
        out["back_to_defaults"] = sorted(apply_ttl(client, defaults))
        out["defaults"] = engines(client)
        try:
            apply_ttl(client, Settings(clickhouse=ClickHouseSettings(path=path, ttl_days={"issues": 3})))
        except ValueError as exc:
            out["unknown"] = str(exc)
    finally:
        client.close()
    print(json.dumps(out))
""")


def test_retention_per_table_is_applied_changed_and_removed(tmp_path: Path) -> None:
    out = _run_child(RETENTION, str(tmp_path / "chdb"))
    configured = out["configured"]
    assert "TTL toDateTime(start) + toIntervalDay(180)" in configured["sessions"]
    assert "TTL toDateTime(minute) + toIntervalDay(14)" in configured["rollups_minute"]
    assert "TTL toDateTime(at) + toIntervalDay(60)" in configured["alerts"]
    assert "TTL" not in configured["errors"]  # 0 = keep forever
    assert "toIntervalDay(30)" in configured["vitals"] and "TTL" not in configured["rollups_hour"]
    assert out["again"] == []  # nothing changed, nothing altered
    assert out["rollup_projects"] == ["new"]
    assert out["back_to_defaults"] == ["alerts", "errors", "rollups_minute", "sessions"]
    defaults = out["defaults"]
    assert "TTL" not in defaults["rollups_minute"] and "TTL" not in defaults["alerts"]
    assert "toIntervalDay(30)" in defaults["errors"] and "toIntervalDay(30)" in defaults["sessions"]
    assert "issues" in out["unknown"] and "rollups_minute" in out["unknown"]


def test_duplicate_migration_versions_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.storage.migrations as migrations

    (tmp_path / "m0099_copy.py").write_text("VERSION = 1\nNAME = 'copy'\n\ndef forward(settings):\n    return []\n")
    monkeypatch.setattr(migrations, "__path__", [*migrations.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "pipeline.storage.migrations.m0099_copy", raising=False)
    try:
        with pytest.raises(RuntimeError, match=r"duplicate migration versions: \[1\]"):
            migrations.discover()
    finally:
        sys.modules.pop("pipeline.storage.migrations.m0099_copy", None)


def test_ddl_snapshot_matches_the_table_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("PULSE_")]:
        monkeypatch.delenv(key)
    snapshot = (SCHEMAS_DIR / "clickhouse.sql").read_text()
    assert snapshot == render_ddl(Settings()), "run `pulse schemas export` and commit schemas/clickhouse.sql"
