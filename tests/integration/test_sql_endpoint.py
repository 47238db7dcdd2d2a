"""The SQL endpoint against a real sink process and real chDB: hostile SQL is refused or runs read-only,
reads are bounded and never hold up inserts or /health, client settings never reach the sink's session."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from pipeline.settings import Settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_sink import action_rows, produce, storage_messages, wait_count

pytestmark = pytest.mark.integration

OK, REFUSED = "ok", "refused"
# (sql, expected). "refused": a 4xx/5xx with ClickHouse's error text; "ok": answered, read-only.
CORPUS = [
    # the cases
    ("SELECT $$'$$; DROP TABLE errors; SELECT ''", REFUSED),
    ("SELECT $$'$$; INSERT INTO errors (project) VALUES ('x'); SELECT ''", REFUSED),
    ("SELECT $$'$$; SELECT 1 INTO OUTFILE '{outfile}'; SELECT ''", REFUSED),
    ("EXPLAIN PLAN SELECT (SELECT groupArray(line) FROM file('/etc/passwd','LineAsString'))", REFUSED),
    ("EXPLAIN SYNTAX SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", REFUSED),
    ("EXPLAIN AST SELECT * FROM file('/etc/passwd')", REFUSED),
    ("DESCRIBE file('/etc/passwd', 'LineAsString')", REFUSED),
    ("DESCRIBE TABLE url('http://127.0.0.1:9/', CSV)", REFUSED),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", REFUSED),
    ("SELECT 1 INTO OUTFILE '{outfile}'", REFUSED),
    ("WITH 1 AS x SELECT x INTO OUTFILE '{outfile}' TRUNCATE FORMAT CSV", REFUSED),
    ("EXPLAIN SELECT 1 INTO OUTFILE '{outfile}'", REFUSED),
    ("SELECT * FROM input('x String')", REFUSED),
    ("SELECT * FROM remote('127.0.0.1', system.one)", REFUSED),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k', CSV)", REFUSED),
    ("SELECT * FROM executable('id', TSV, 'x String')", REFUSED),
    ("SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", REFUSED),
    ("SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')", REFUSED),
    ("SELECT * FROM sqlite('/tmp/x.db', 't')", REFUSED),
    ("SELECT * FROM dictionary('d')", REFUSED),
    ("SELECT * FROM someFutureTableFunction(1)", REFUSED),  # allow-list: unknown ones are refused
    ("SELECT x IN url('http://127.0.0.1:9/', CSV) FROM (SELECT 1 AS x)", REFUSED),
    ("SELECT file('/etc/passwd')", REFUSED),
    ("DROP TABLE errors", REFUSED),
    ("TRUNCATE TABLE errors", REFUSED),
    ("ALTER TABLE errors DELETE WHERE 1", REFUSED),
    ("INSERT INTO errors (project) VALUES ('x')", REFUSED),
    ("INSERT INTO FUNCTION file('{outfile}') SELECT 1", REFUSED),
    ("CREATE TABLE t (x UInt8) ENGINE = Memory", REFUSED),
    ("SET readonly = 0", REFUSED),
    ("SYSTEM SHUTDOWN", REFUSED),
    ("KILL QUERY WHERE 1", REFUSED),
    ("USE system", REFUSED),
    # comments in every style, nested
    ("/* /* nested */ DROP TABLE errors; */ SELECT 1", OK),
    ("SELECT 1 /* /* */ */ ; DROP TABLE errors", REFUSED),
    ("SELECT 1 -- ; DROP TABLE errors\n", OK),
    ("SELECT 1 # ; DROP TABLE errors\n", OK),
    ("-- leading\n/* and */ # more\nSELECT count() FROM errors", OK),
    ("SELECT 1 -- c\n; DROP TABLE errors", REFUSED),
    ("SELECT 1 /* unterminated ; DROP TABLE errors", REFUSED),
    # multi-statements in every quoting style
    ("SELECT 1; DROP TABLE errors", REFUSED),
    ("SELECT 'a;b'; DROP TABLE errors", REFUSED),
    ("SELECT 'it''s'; DROP TABLE errors", REFUSED),
    ("SELECT 'a\\'; DROP TABLE errors; SELECT \\''", OK),  # one string literal, escaped quotes
    ("SELECT \"x;y\" FROM (SELECT 1 AS `x;y`); DROP TABLE errors", REFUSED),
    ("SELECT `a``;b` FROM (SELECT 1 AS `a``;b`)", OK),
    ("SELECT $tag$; DROP TABLE errors;$tag$", OK),
    ("SELECT $tag$x$tag$; DROP TABLE errors", REFUSED),
    ("SELECT $$x$$ ; DROP TABLE errors", REFUSED),
    ("SELECT 1;;", OK),
    # SETTINGS in every position (readonly=1: no setting may change)
    ("SELECT 1 SETTINGS readonly = 0", REFUSED),
    ("SELECT count() FROM numbers(10) SETTINGS max_rows_to_read = 0", REFUSED),
    ("SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 0)", REFUSED),
    ("SELECT 1 SETTINGS max_result_rows = 0 FORMAT JSON", REFUSED),
    ("WITH (SELECT 1 SETTINGS allow_ddl = 1) AS y SELECT y", REFUSED),
    ("EXPLAIN SELECT 1 SETTINGS readonly = 0", REFUSED),
    # unicode, nested subqueries, reads
    ("SELECT 'é☃😀' AS `ключ`", OK),
    ("SELECT ＳＥＬＥＣＴ 1", REFUSED),
    ("SELECT (SELECT (SELECT (SELECT count() FROM errors)))", OK),
    ("SELECT * FROM (SELECT * FROM (SELECT number FROM numbers(3))) WHERE number IN (SELECT 1)", OK),
    ("SELECT number FROM numbers(3) UNION ALL SELECT 1 INTERSECT SELECT 1", OK),
    ("SELECT * FROM values('x UInt8', 1, 2)", OK),
    ("SELECT * FROM generateRandom('x UInt8') LIMIT 3", OK),
    ("SHOW TABLES", OK),
    ("SHOW CREATE TABLE errors", OK),
    ("DESCRIBE TABLE errors", OK),
    ("EXISTS TABLE errors", OK),
    ("EXPLAIN SELECT count() FROM errors", OK),
    ("EXPLAIN AST DROP TABLE errors", REFUSED),
    ("SELECT name FROM system.tables WHERE database = 'pulse' LIMIT 1", OK),
]


def post(port: int, sql: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, str, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode(params or {})
    req = urllib.request.Request(url, data=sql.encode(), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_hostile_sql_is_refused_or_read_only_and_the_sink_still_inserts(settings: Settings, tmp_path: Path) -> None:
    outfile = tmp_path / "outfile.txt"
    procs = PipelineProcs(settings, tmp_path / "logs")
    port = settings.sink.port
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{port}/ping")
        wrong = []
        for sql, expected in CORPUS:
            status, body, headers = post(port, sql.replace("{outfile}", str(outfile)))
            got = OK if status == 200 else REFUSED
            if got != expected or (got == REFUSED and "DB::Exception" not in body) or \
                    (got == REFUSED and headers.get("X-ClickHouse-Exception-Code", "0") == "0"):
                wrong.append((sql, status, body[:200]))
        assert wrong == [], "\n".join(map(repr, wrong))
        assert not outfile.exists()
        assert post(port, "EXISTS TABLE errors")[1].strip() == "1"
        # the sink still inserts (its own session was never touched)
        asyncio.run(produce(settings, storage_messages(settings, action_rows(50), 10)))
        assert wait_count(settings, "actions", 50) == "50\t50", procs.log("sink")
    finally:
        procs.stop_all()


def test_client_settings_are_per_query_and_readonly_param_does_not_break_inserts(settings: Settings,
                                                                                tmp_path: Path) -> None:
    procs = PipelineProcs(settings, tmp_path / "logs")
    port = settings.sink.port
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{port}/ping")
        assert post(port, "SELECT 1", {"readonly": "1"})[:2] == (200, "1\n")
        assert post(port, "SELECT 1", {"readonly": "2"})[0] == 200
        status, body, headers = post(port, "SELECT 1", {"readonly": "0"})
        assert status == 403 and "READONLY" in body and headers["X-ClickHouse-Exception-Code"] == "164"
        status, body, _ = post(port, "SELECT 1", {"allow_ddl": "1"})
        assert status == 403 and "Cannot modify 'allow_ddl'" in body
        status, body, headers = post(port, "SELECT 1", {"no such setting!": "1"})
        assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "115"
        status, body, _ = post(port, "SELECT number FROM numbers(10)", {"max_result_rows": "3"})
        assert status == 500 and "TOO_MANY_ROWS_OR_BYTES" in body  # a client may lower a limit...
        assert post(port, "SELECT 1", {"max_result_rows": "100000000"})[0] == 400  # ...never raise it
        # a driver's deadline above the time limit (clickhouse-go sends deadline + 5 s) is lowered to the limit
        assert post(port, "SELECT getSetting('max_execution_time')", {"max_execution_time": "100000"})[:2] == \
            (200, "30\n")
        # allowed settings apply to that query only
        assert post(port, "SELECT timezone()", {"session_timezone": "Asia/Tokyo"})[1] == "Asia/Tokyo\n"
        assert post(port, "SELECT getSetting('session_timezone')")[1] != "Asia/Tokyo\n"
        # format, database and query id from headers (the JDBC driver's way) or parameters
        status, body, headers = post(port, "SELECT 1 AS n", headers={
            "X-ClickHouse-Format": "JSONEachRow", "X-ClickHouse-Database": "system", "X-ClickHouse-Query-Id": "q-42"})
        assert (status, body) == (200, '{"n":1}\n') and headers["X-ClickHouse-Query-Id"] == "q-42"
        assert post(port, "SELECT currentDatabase()", {"database": "system"})[1] == "system\n"
        assert post(port, "SELECT {n:UInt8} + 1", {"param_n": "4"})[1] == "5\n"
        # after all that, inserts still work
        asyncio.run(produce(settings, storage_messages(settings, action_rows(30), 10)))
        assert wait_count(settings, "actions", 30) == "30\t30", procs.log("sink")
    finally:
        procs.stop_all()


def test_a_long_read_times_out_and_never_holds_up_inserts_or_health(settings: Settings, tmp_path: Path) -> None:
    procs = PipelineProcs(settings, tmp_path / "logs")
    port = settings.sink.port
    try:
        procs.start("sink", PULSE_SINK_SQL_MAX_EXECUTION_TIME_S="12", PULSE_SINK_SQL_MAX_ROWS_TO_READ="0")
        procs.wait_http(f"http://127.0.0.1:{port}/ping")
        asyncio.run(produce(settings, storage_messages(settings, action_rows(10), 10)))
        assert wait_count(settings, "actions", 10) == "10\t10"
        result: dict[str, object] = {}

        def long_read() -> None:
            started = time.monotonic()
            result["answer"] = post(port, "SELECT count() FROM numbers(1e12)", timeout=120)
            result["seconds"] = time.monotonic() - started

        reader = threading.Thread(target=long_read)
        reader.start()
        time.sleep(1.5)  # the read is running
        health_seconds = []
        for _ in range(5):
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
                assert orjson.loads(resp.read())["clickhouse"]["ok"]
            health_seconds.append(time.monotonic() - started)
        started = time.monotonic()
        asyncio.run(produce(settings, storage_messages(settings, action_rows(40), 10, first_src_offset=100)))
        deadline = time.monotonic() + 10
        landed = None
        while time.monotonic() < deadline:  # counted on the write lane's client-free path: the SQL endpoint's
            # read lane has one more thread free (2 by default) while the long read runs
            status, body, _ = post(port, "SELECT count() FROM actions", timeout=10)
            if status == 200 and body.strip() == "50":
                landed = time.monotonic() - started
                break
            time.sleep(0.2)
        assert reader.is_alive(), "the long read should still be running while the inserts land"
        assert landed is not None and landed < 10, procs.log("sink")
        assert max(health_seconds) < 1.0, health_seconds
        reader.join(timeout=60)
        status, body, headers = result["answer"]  # type: ignore[misc]
        assert status == 500 and "TIMEOUT_EXCEEDED" in body and headers["X-ClickHouse-Exception-Code"] == "159"
        print(f"health max {max(health_seconds):.3f}s, 40 rows landed in {landed:.2f}s during the long read, "
              f"which timed out after {result['seconds']:.1f}s")
    finally:
        procs.stop_all()
