"""The clients analysts point at the sink's SQL endpoint, each pinned and run for real against a real
sink (real chDB, rows landed through Kafka): the ClickHouse JDBC driver (jdbc-v2/client-v2, what
DBeaver and Metabase load; tests/drivers/java), the official JS client @clickhouse/client
(tests/drivers/node) and clickhouse-connect. Each reads exact values of several column types, uses
query parameters, compresses as it does by default (JDBC: compress=1 LZ4 blocks; JS and
clickhouse-connect: gzip) and gets ClickHouse's READONLY code for a write. Plain HTTP checks the
compressed request bodies (checksums, the decompression bound) and ClickHouse's response headers.

The Java and Node programs need `deploy/ensure-sdk-deps.sh` (run by `make test`); a missing toolchain
or package is a skip with the reason, except under CI where it is a failure."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from pipeline.contract import EVENT_ADAPTER
from pipeline.ingest.normalize import event_to_row
from pipeline.kafka_admin import ensure_topics
from pipeline.settings import Settings
from pipeline.storage.http_compression import compress_blocks
from tests.conftest import make_settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_sink import produce, storage_messages

pytestmark = pytest.mark.integration
DRIVERS = Path(__file__).resolve().parents[1] / "drivers"
KEY = "analyst-key-1"
BODY_LIMIT = 1024 * 1024  # PULSE_SINK_SQL_MAX_REQUEST_BODY_BYTES for these tests
SELECT = "SELECT session_id, x, timestamp FROM actions WHERE project = 'drivers' ORDER BY session_id"


def _rows() -> list[bytes]:
    """Two actions of project 'drivers': drv-1 with x=10.5 at .125, drv-2 without x at .250."""
    now = datetime.now(timezone.utc)
    out = []
    for session, selector, kind, ms, action in (("drv-1", "#buy", "click", 125, {"x": 10.5, "y": 1}),
                                                 ("drv-2", "#promo", "custom", 250, {"name": "promo_seen"})):
        e = EVENT_ADAPTER.validate_python({
            "event_id": str(uuid.uuid4()), "type": "action", "project": "drivers", "session_id": session,
            "timestamp": f"2026-03-01T12:00:00.{ms:03d}Z", "action": {"kind": kind, "selector": selector, **action}})
        out.append(orjson.dumps(event_to_row(e, now)[1]))
    return out


def post(port: int, body: bytes, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode(params or {})
    req = urllib.request.Request(url, data=body, headers={"X-ClickHouse-Key": KEY, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def compression_counts(port: int) -> dict[tuple[str, str], float]:
    """The sink's pulse_sql_compression_total by (direction, compression)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(d, c): float(v) for c, d, v in re.findall(
        r'^pulse_sql_compression_total\{compression="([^"]+)",direction="([^"]+)"\} (\S+)$', text, re.M)}


@dataclass
class Served:
    settings: Settings
    procs: PipelineProcs

    @property
    def port(self) -> int:
        return self.settings.sink.port


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("sql-drivers")
    settings = make_settings(kafka_bootstrap, tmp, PULSE_SINK_SQL_ACCESS_KEY=KEY,
                             PULSE_SINK_SQL_MAX_REQUEST_BODY_BYTES=str(BODY_LIMIT))
    asyncio.run(ensure_topics(settings.kafka))
    procs = PipelineProcs(settings, tmp / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        asyncio.run(produce(settings, storage_messages(settings, _rows(), 2)))
        deadline, got = time.monotonic() + 60, b""
        while time.monotonic() < deadline:
            got = post(settings.sink.port, b"SELECT count() FROM actions WHERE project = 'drivers'")[1]
            if got == b"2\n":
                break
            time.sleep(0.3)
        assert got == b"2\n", procs.log("sink")
        yield Served(settings, procs)
    finally:
        procs.stop_all()


def _tool_ready(tools: tuple[str, ...], ready: Path) -> None:
    absent = [t for t in tools if shutil.which(t) is None]
    reason = (f"toolchain missing: {', '.join(absent)} (see deploy/ensure-sdk-deps.sh)" if absent else
              None if ready.exists() else f"{ready} missing: run deploy/ensure-sdk-deps.sh")
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _run(command: list[str], served: Served) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{served.procs.log('sink')[-3000:]}"
    return proc.stdout


@pytest.mark.sdk
def test_jdbc_driver_metadata_typed_reads_prepared_statement_and_refused_write(served: Served, tmp_path: Path) -> None:
    deps = DRIVERS / "java" / "target" / "dependency"
    _tool_ready(("java", "javac"), deps / "jdbc-v2-0.10.0.jar")
    classes = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(classes), "-cp", f"{deps}/*",
                    str(DRIVERS / "java" / "src" / "drivers" / "JdbcProbe.java")], check=True, timeout=300)
    before = compression_counts(served.port)
    # default driver options but one setting: session_timezone, so that a DateTime without a zone in its
    # type is only read right through X-ClickHouse-Timezone (the JVM's own zone pinned: getTimestamp uses it)
    out = _run(["java", "-Duser.timezone=UTC", "-cp", f"{classes}{os.pathsep}{deps}/*", "drivers.JdbcProbe",
                f"jdbc:clickhouse://127.0.0.1:{served.port}/pulse?clickhouse_setting_session_timezone=Asia/Tokyo",
                "default", KEY], served)
    facts = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    assert facts["product"] == "ClickHouse" and facts["driver"] == "ClickHouse JDBC Driver 0.10.0"
    assert {"pulse", "system"} <= set(facts["schemas"].split(","))
    tables = set(facts["tables"].split(","))
    assert {"actions:TABLE", "errors:TABLE", "sessions:TABLE", "page_ux_minute:VIEW"} <= tables, tables
    assert {"TABLE", "VIEW", "MATERIALIZED VIEW"} <= set(facts["tableTypes"].split(","))
    assert facts["primaryKeys"] == "kind,project,route,session_id,timestamp"  # actions' ORDER BY, sorted
    assert facts["importedKeys"] == ""
    assert {"String", "Nullable", "LowCardinality", "DateTime64", "UInt64", "Float64", "Array"} <= set(
        facts["typeInfo"].split(","))  # getTypeInfo reads FROM VALUES(...): upper case, on the allow-list
    columns = facts["columns"].split(";")
    # name:TYPE_NAME:java.sql.Types:IS_NULLABLE (12 VARCHAR, 93 TIMESTAMP, 8 DOUBLE, 1111 OTHER)
    for expected in ("event_id:UUID:1111:NO", "project:LowCardinality(String):12:NO",
                     "timestamp:DateTime64(3, 'UTC'):93:NO", "x:Nullable(Float64):8:YES", "session_id:String:12:NO"):
        assert expected in columns, columns
    assert facts["select.types"] == ("session_id:String;x:Nullable(Float64);project:LowCardinality(String);"
                                     "timestamp:DateTime64(3, 'UTC');selector_length:UInt64;doubled:Float64;"
                                     "pair:Array(String)")
    assert facts["select.rows"] == "2"
    assert facts["select.row0"] == "drv-1|10.5|drivers|2026-03-01 12:00:00.125|4|21.0|[click, #buy]"
    assert facts["select.row1"] == "drv-2|NULL|drivers|2026-03-01 12:00:00.25|6|0.0|[custom, #promo]"
    assert facts["select.instant0"] == "2026-03-01T12:00:00.125Z"
    assert facts["select.instant1"] == "2026-03-01T12:00:00.250Z"
    assert facts["plain.zoned"] == "2026-03-01T12:00+09:00[Asia/Tokyo]|Asia/Tokyo"
    assert facts["prepared"] == "1|#buy"
    assert facts["write.code"] == "164" and "(READONLY)" in facts["write.message"], facts
    after = compression_counts(served.port)
    # the driver's default: every answer in ClickHouse's LZ4 blocks (compress=1)
    assert after.get(("response", "blocks"), 0) - before.get(("response", "blocks"), 0) >= 5, (before, after)


@pytest.mark.sdk
def test_official_js_client_formats_params_gzip_and_refused_write(served: Served) -> None:
    _tool_ready(("node",), DRIVERS / "node" / "node_modules" / "@clickhouse" / "client" / "package.json")
    before = compression_counts(served.port)
    out = json.loads(_run(["node", str(DRIVERS / "node" / "probe.cjs"), f"http://127.0.0.1:{served.port}",
                           "default", KEY], served).strip().splitlines()[-1])
    rows = [{"session_id": "drv-1", "x": 10.5, "timestamp": "2026-03-01 12:00:00.125"},
            {"session_id": "drv-2", "x": None, "timestamp": "2026-03-01 12:00:00.250"}]
    assert out["ping"] is True
    assert out["jsonEachRow"] == rows
    assert out["json"] == {"meta": [{"name": "session_id", "type": "String"}, {"name": "x", "type": "Nullable(Float64)"},
                                    {"name": "timestamp", "type": "DateTime64(3, 'UTC')"}], "data": rows, "rows": 2}
    assert out["csv"] == ('"session_id","x","timestamp"\n"drv-1",10.5,"2026-03-01 12:00:00.125"\n'
                          '"drv-2",\\N,"2026-03-01 12:00:00.250"\n')
    assert out["params"] == [{"n": 1, "s": "#promo"}]
    assert out["bigRows"] == 100000
    assert out["write"]["code"] == "164" and out["write"]["type"] == "READONLY", out["write"]
    after = compression_counts(served.port)
    assert after.get(("response", "gzip"), 0) - before.get(("response", "gzip"), 0) >= 5, (before, after)
    assert after.get(("request", "gzip"), 0) - before.get(("request", "gzip"), 0) >= 1, (before, after)


def test_clickhouse_connect_default_compression_arrow_and_pandas(served: Served) -> None:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    before = compression_counts(served.port)
    client = clickhouse_connect.get_client(host="127.0.0.1", port=served.port, password=KEY)  # default compress
    try:
        assert client.compression  # it found enable_http_compression on (system.settings) and asks for it
        result = client.query(SELECT)
        assert result.result_rows == [("drv-1", 10.5, datetime(2026, 3, 1, 12, 0, 0, 125000)),
                                      ("drv-2", None, datetime(2026, 3, 1, 12, 0, 0, 250000))]
        assert client.query("SELECT {s:String} AS s, {n:UInt8} + 1 AS n", parameters={"s": "a\tb", "n": 4}
                            ).result_rows == [("a\tb", 5)]
        table = client.query_arrow(SELECT)
        assert table.column_names == ["session_id", "x", "timestamp"]
        assert table.column("x").to_pylist() == [10.5, None]
        assert [t.isoformat() for t in table.column("timestamp").to_pylist()] == [
            "2026-03-01T12:00:00.125000+00:00", "2026-03-01T12:00:00.250000+00:00"]
        frame = client.query_df(SELECT)
        assert frame["session_id"].tolist() == ["drv-1", "drv-2"] and frame["x"].isna().tolist() == [False, True]
        with pytest.raises(DatabaseError) as err:
            client.command("INSERT INTO actions (project) VALUES ('py')")
        assert "Code: 164" in str(err.value) and "READONLY" in str(err.value)
    finally:
        client.close()
    after = compression_counts(served.port)
    assert after.get(("response", "gzip"), 0) > before.get(("response", "gzip"), 0), (before, after)


def test_compressed_request_bodies_and_clickhouse_headers_over_plain_http(served: Served) -> None:
    port = served.port
    # decompress=1: the query in ClickHouse's blocks; compress=1: the answer in them
    status, body, headers = post(port, compress_blocks(b"SELECT 6 * 7 AS n"), {"decompress": "1", "compress": "1",
                                                                              "default_format": "JSONEachRow"})
    assert status == 200 and body[16] == 0x82 and body.endswith(b'{"n":42}\n'), body
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["Content-Type"] == "application/x-ndjson; charset=UTF-8"
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Server-Display-Name"]
    # a damaged block: ClickHouse's CHECKSUM_DOESNT_MATCH
    damaged = bytearray(compress_blocks(b"SELECT 1"))
    damaged[-1] ^= 0x20
    status, body, headers = post(port, bytes(damaged), {"decompress": "1"})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "40" and b"CHECKSUM_DOESNT_MATCH" in body
    # a gzip bomb stops at the operator's bound (16 MiB of spaces, ~16 KiB sent)
    bomb = gzip.compress(b"SELECT 1" + b" " * (16 * 1024 * 1024))
    status, body, headers = post(port, bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and headers["X-ClickHouse-Exception-Code"] == "307", body[:300]
    status, body, headers = post(port, b"SELECT 1" + b" " * BODY_LIMIT)  # past the bound as sent, too
    assert status == 413 and headers["X-ClickHouse-Exception-Code"] == "307", body[:300]
    status, body, _ = post(port, gzip.compress(b"SELECT 'gzipped'"), headers={"Content-Encoding": "gzip"})
    assert (status, body) == (200, b"gzipped\n")
    # the summary counts what the read did, as ClickHouse's header does
    status, body, headers = post(port, b"SELECT session_id FROM actions WHERE project = 'drivers'")
    summary = json.loads(headers["X-ClickHouse-Summary"])
    assert status == 200 and summary["result_rows"] == "2" and int(summary["read_rows"]) >= 2, summary
    assert summary["result_bytes"] == str(len(body)) and summary["written_rows"] == "0"
    # formats analysts' tools ask for, each with ClickHouse's Content-Type
    for fmt, content_type, starts in (("Parquet", "application/octet-stream", b"PAR1"),
                                      ("ArrowStream", "application/octet-stream", b"\xff\xff\xff\xff"),
                                      ("CSVWithNames", "text/csv; charset=UTF-8; header=present", b'"session_id"'),
                                      ("RowBinaryWithNamesAndTypes", "application/octet-stream", b"\x03\x0asession_id")):
        status, body, headers = post(port, SELECT.encode(), {"default_format": fmt})
        assert status == 200 and headers["Content-Type"] == content_type and body.startswith(starts), (fmt, body[:40])
    # enable_http_compression=0 turns the HTTP encoding off even when the client accepts gzip
    status, body, headers = post(port, b"SELECT 1", {"enable_http_compression": "0"}, {"Accept-Encoding": "gzip"})
    assert status == 200 and "Content-Encoding" not in headers and body == b"1\n"
