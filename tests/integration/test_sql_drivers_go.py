"""The SQL endpoint through the Go ClickHouse driver (clickhouse-go/v2 over HTTP, pinned in
tests/drivers/go), connected as Grafana's ClickHouse data source connects, against a real sink on
real chDB: the plugin's probes and schema listings, every dashboard query of deploy/grafana with its
macros expanded, typed columns from the pipeline's own tables, bound parameters, and a refused
write that comes back as a Go error with ClickHouse's code.

The data: the Grafana dashboard test's fixtures (tests/integration/test_grafana_sql.py) plus typed
rows (received now: raw rows are kept for a retention counted from received_at), loaded into the
sink's chDB directory before the sink starts (one process per data directory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tests.integration.test_grafana_sql as grafana
from pipeline.settings import Settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_sql_endpoint import post

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROBE_DIR = ROOT / "tests" / "drivers" / "go"
KEY = "grafana-reader-key"
# Runs of the probe: compression and connection flags. gzip with user and default database is the data
# source as deploy/grafana/provisioning sets it up (the plugin asks for gzip over HTTP; ClickHouse, like
# this endpoint, answers uncompressed unless enable_http_compression=1). lz4 (compress=1, ClickHouse's
# compressed blocks) is added once the endpoint speaks it.
CASES = {"none": (), "gzip": ("-user", "grafana", "-database", "pulse"), "lz4": ()}
TYPED_FIXTURES = [
    "INSERT INTO errors (event_id, project, timestamp, received_at, exception_type, message, handled, tags, "
    "fingerprint, group_id) VALUES ('00000000-0000-4000-8000-000000000003', 'typed', '2026-01-02 03:04:05.678', "
    "now64(3), 'RangeError', 'é ☃ \"quoted\"', true, map('browser', 'Firefox', 'os', 'Linux'), "
    "['checkout', 'pay'], 'g-typed')",
    "INSERT INTO api_calls (event_id, project, timestamp, received_at, kind, request_url, method, status, "
    "duration_ms, ok, size_bytes) VALUES "
    "('00000000-0000-4000-8000-000000000001', 'typed', '2026-01-02 03:04:05.678', now64(3), "
    "'fetch', '/api/cart', 'POST', NULL, 12.5, false, 18446744073709551615), "
    "('00000000-0000-4000-8000-000000000002', 'typed', '2026-01-02 03:04:07.001', now64(3), "
    "'xhr', '/api/pay', 'GET', 503, 250.25, false, NULL)",
]


def _probe_binary(tmp: Path) -> Path:
    """The probe, built from the pinned module (deploy/ensure-sdk-deps.sh fills Go's caches)."""
    if shutil.which("go") is None:
        if os.environ.get("CI"):
            pytest.fail("go is missing (see deploy/ensure-sdk-deps.sh)")
        pytest.skip("go is missing (see deploy/ensure-sdk-deps.sh)")
    binary = tmp / "driverprobe"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=PROBE_DIR, check=True, timeout=600)
    return binary


def _load_fixtures(settings: Settings) -> None:
    job = {"fixtures": grafana.fixtures() + TYPED_FIXTURES, "queries": {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    proc = subprocess.run([sys.executable, "-c", grafana.CHILD, str(settings.clickhouse.path)], input=json.dumps(job),
                          capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run(binary: Path, port: int, jobs: list[dict[str, Any]], *args: str) -> dict[str, dict[str, Any]]:
    proc = subprocess.run([str(binary), "-addr", f"127.0.0.1:{port}", *args],
                          input="\n".join(json.dumps(j) for j in jobs), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {a["key"]: a for a in answers}


def _plugin_jobs() -> list[dict[str, Any]]:
    """What the plugin itself sends (grafana/clickhouse-datasource 4.20: pkg/plugin/driver.go and
    src/data/CHDatasource.ts, CHVariableSupport.tsx), for the pipeline's database and errors table."""
    sqls = {
        "version": "SELECT version()",  # CheckMinServerVersion and the ad hoc filter probe
        "databases": "SHOW DATABASES",
        "tables": 'SHOW TABLES FROM "pulse"',
        "tables default": "SHOW TABLES",
        "fields": 'DESC TABLE "pulse"."errors"',
        "columns": "SELECT name, type, table FROM system.columns WHERE database IN ('pulse') AND table = 'errors'",
        "variable tables": "SELECT name FROM system.tables WHERE database = 'pulse' ORDER BY name",
        "map keys": 'SELECT DISTINCT arrayJoin(mapKeys("tags")) as keys FROM (SELECT "tags" FROM "pulse"."errors" '
                    "LIMIT 100000) LIMIT 1000",
        "distinct values": 'SELECT DISTINCT "exception_type" FROM "pulse"."errors" WHERE "exception_type" IS NOT NULL '
                           "LIMIT 1000",
        "map values": "SELECT DISTINCT \"tags\"['browser'] FROM \"pulse\".\"errors\" WHERE mapContains(\"tags\", "
                      "'browser') LIMIT 1000",
    }
    return [{"key": k, "sql": v} for k, v in sqls.items()]


def _typed_jobs() -> list[dict[str, Any]]:
    return [
        {"key": "typed errors", "sql": "SELECT event_id, project, timestamp, message, handled, tags, fingerprint "
                                       "FROM errors WHERE project = 'typed'"},
        {"key": "typed api calls", "sql": "SELECT event_id, method, status, duration_ms, size_bytes FROM api_calls "
                                          "WHERE project = 'typed' ORDER BY event_id"},
        {"key": "more types", "sql": "SELECT CAST('b' AS Enum8('a' = 1, 'b' = 2)) AS e, toDecimal64(1.25, 2) AS d, "
                                     "toIPv4('10.0.0.1') AS ip, toInt128(-5) AS big, CAST((1, 'x') AS Tuple(a UInt8, b String)) AS t, "
                                     "[toNullable('a'), NULL] AS an, NULL AS nothing, [[toLowCardinality('x')], []] AS alc, "
                                     "CAST(map('k', [1, 2]) AS Map(LowCardinality(String), Array(UInt8))) AS m, "
                                     "toLowCardinality(CAST(NULL AS Nullable(String))) AS lcn"},
        {"key": "server parameters", "sql": "SELECT count() AS n, any(exception_type) AS t FROM errors "
                                            "WHERE project = {project:String} AND group_id = {group:String}",
         "params": {"project": "demo", "group": "g-home"}},
        {"key": "driver parameters", "sql": "SELECT count() AS n FROM errors WHERE project = ? AND message = ?",
         "args": ["typed", 'é ☃ "quoted"']},
        {"key": "write", "sql": "INSERT INTO errors (project) VALUES ('x')", "exec": True},
        {"key": "aggregate state", "sql": "SELECT sumState(toUInt64(1)) AS s"},
        {"key": "empty", "sql": "SELECT project FROM errors WHERE 0"},
    ]


def _dashboard_jobs(frm: int, to: int) -> list[dict[str, Any]]:
    jobs = []
    for key, (_, _, sql) in grafana.clickhouse_queries().items():
        jobs.append({"key": f"{key} / demo", "sql": grafana.expand(sql, {"project": ["demo"]}, frm, to)})
        jobs.append({"key": f"{key} / All", "sql": grafana.expand(sql, {"project": None}, frm, to)})
    return jobs


def test_clickhouse_go_over_http_runs_what_grafana_sends(settings: Settings, tmp_path: Path) -> None:
    binary = _probe_binary(tmp_path)
    _load_fixtures(settings)
    procs = PipelineProcs(settings, tmp_path / "logs")
    port = settings.sink.port
    auth = {"X-ClickHouse-Key": KEY}
    try:
        procs.start("sink", PULSE_SINK_SQL_ACCESS_KEY=KEY)
        procs.wait_http(f"http://127.0.0.1:{port}/ping")
        now = int(time.time())
        frm, to = now - grafana.RANGE_S, now + 60
        dashboards = _dashboard_jobs(frm, to)
        jobs = _plugin_jobs() + _typed_jobs() + dashboards
        version = post(port, "SELECT version()", headers=auth)[1].strip()
        desc = [line.split("\t")[:2] for line in post(port, "DESCRIBE TABLE errors", {"default_format": "TabSeparatedRaw"}, headers=auth)[1].splitlines()]

        for compression, flags in CASES.items():
            got = _run(binary, port, jobs, "-password", KEY, "-compress", compression, *flags)
            where = f"(compress {compression})"
            assert got["ping"] == {"key": "ping", "ok": True}, where
            failed = {k: a["error"][:300] for k, a in got.items() if "error" in a
                      and k not in ("write", "aggregate state")}
            assert failed == {}, where

            # the plugin's probes and schema listings
            assert got["version"]["rows"] == [[version]] and version.count(".") == 3
            assert {"pulse", "system"} <= {r[0] for r in got["databases"]["rows"]}
            tables = [r[0] for r in got["tables"]["rows"]]
            assert {"errors", "sessions", "rollups_minute", "alerts"} <= set(tables)
            assert got["tables default"]["rows"] == got["tables"]["rows"]  # "default" is the pipeline's database
            assert [r[:2] for r in got["fields"]["rows"]] == desc
            assert sorted(r[:2] for r in got["columns"]["rows"]) == sorted(desc)
            assert [r[0] for r in got["variable tables"]["rows"]] == sorted(tables)
            assert sorted(r[0] for r in got["map keys"]["rows"]) == ["browser", "os"]
            assert sorted(r[0] for r in got["distinct values"]["rows"]) == ["RangeError", "TypeError"]
            assert got["map values"]["rows"] == [["Firefox"]]

            # typed columns of the pipeline's tables, exact
            typed = got["typed errors"]
            assert typed["types"] == ["UUID", "LowCardinality(String)", "DateTime64(3, 'UTC')", "String", "Bool",
                                      "Map(String, String)", "Array(String)"], where
            assert typed["rows"] == [["00000000-0000-4000-8000-000000000003", "typed", "2026-01-02T03:04:05.678Z",
                                      'é ☃ "quoted"', True, {"browser": "Firefox", "os": "Linux"},
                                      ["checkout", "pay"]]], where
            calls = got["typed api calls"]
            assert calls["types"] == ["UUID", "LowCardinality(String)", "Nullable(UInt16)", "Float64",
                                      "Nullable(UInt64)"], where
            assert calls["rows"] == [["00000000-0000-4000-8000-000000000001", "POST", None, 12.5, 18446744073709551615],
                                     ["00000000-0000-4000-8000-000000000002", "GET", 503, 250.25, None]], where
            assert got["more types"]["rows"] == [["b", "1.25", "10.0.0.1", "-5", {"a": 1, "b": "x"}, ["a", None], None,
                                                  [["x"], []], {"k": [1, 2]}, None]], (where, got["more types"])
            assert got["server parameters"]["rows"] == [[2, "TypeError"]], where
            assert got["driver parameters"]["rows"] == [[1]], where
            assert got["empty"]["rows"] == [], where

            # refused: a write (readonly), a column whose Native layout is not re-framed
            if compression == "lz4":
                # clickhouse-go 2.47 sends Exec without compress=1 yet reads any error body as LZ4 blocks
                # (conn_http.go readRawResponse), so against a ClickHouse server too the code is lost here;
                # the refusal still reaches the program as an error with the HTTP status
                assert "[HTTP 403]" in got["write"]["error"], got["write"]
            else:
                assert got["write"]["code"] == 164 and "READONLY" in got["write"]["error"], got["write"]
            assert got["aggregate state"]["code"] == 48, got["aggregate state"]

            # every dashboard query, checked as the dashboard test checks chDB's own answers
            answers = {j["key"]: {**got[j["key"]], "sql": j["sql"]} for j in dashboards}
            grafana.test_every_clickhouse_query_runs_and_returns_rows(answers)
            grafana.test_project_variable_lists_the_projects(answers)
            grafana.test_overview_numbers_follow_the_project_filter(answers)
            grafana.test_web_vitals_p75_and_ratings_match_the_rollup_code(answers)
            grafana.test_top_issues_count_events_in_the_range(answers)
            grafana.test_rage_and_dead_clicks_by_page(answers)
            grafana.test_firing_alerts_are_the_latest_firing_events(answers)

        # without the key the driver cannot connect: ClickHouse's authentication error, in Go
        denied = _run(binary, port, [], "-compress", "none")["ping"]
        assert denied["code"] == 516 and "AUTHENTICATION_FAILED" in denied["error"], denied
        # a protocol revision the endpoint cannot write is refused, not answered in another layout
        status, body, headers = post(port, "SELECT 1", {"default_format": "Native", "client_protocol_version": "99999"},
                                     headers=auth)
        assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "36", body
    finally:
        procs.stop_all()
