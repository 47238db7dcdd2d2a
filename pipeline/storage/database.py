"""The engine handle the sink writes through and the SQL endpoint reads through, in separate lanes.

* Write lane: one thread and one clickhouse-connect client (the sink's inserts, marks, forget-user).
* Read lane: ``PULSE_SINK_SQL_MAX_CONCURRENT_READS`` threads. On embedded chDB every analyst query
  gets a fresh ``chdb.connect`` handle on the same engine (a handle costs ~1 ms): its session is set
  up with the operator's limits, the client's allowed settings and then ``readonly = 1``, runs the one
  query and is closed. Settings on a chDB handle stay on that handle (measured: a ``SET readonly=1`` on
  one handle leaves the others writable), so nothing a client sends reaches the sink's session, and
  two handles run at once (measured: 3 ms inserts while another handle counts ``numbers(1e12)``).
  On a ClickHouse server the same settings go with each HTTP request instead.
* Probe lane: one thread for ``/health``, so a busy read lane does not make the sink look dead.

What a request *is* is decided by the engine's parser (``formatQuery`` then ``EXPLAIN AST`` on the
formatted single statement, both on a read-only handle) and judged in ``sql_policy.py``. Never pass a
client's text to ``chdb`` as is: chDB runs every ``;``-separated statement it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pipeline.settings import ClickHouseSettings, SinkSettings
from pipeline.storage.native_format import parse_revision, to_revision
from pipeline.storage.sql_policy import SqlRefused, check, client_settings, parse_explain_ast

T = TypeVar("T")
PARSE_TIMEOUT_S = 5
# Set on every analyst handle, before readonly: the endpoint answers in the client's Accept-Encoding
# unless it sends enable_http_compression=0 (query_server.py), and system.settings says so. Under
# readonly=1 every setting reads as not writable, so clickhouse-connect (which asks system.settings
# whether it may send enable_http_compression=1) would otherwise turn its compression off.
HANDLE_SETTINGS = {"enable_http_compression": 1}


def read_limits(sink: SinkSettings) -> dict[str, int | float]:
    """The operator's per-query limits (0 = unlimited, as in ClickHouse)."""
    return {"max_execution_time": sink.sql_max_execution_time_s, "max_memory_usage": sink.sql_max_memory_usage,
            "max_result_rows": sink.sql_max_result_rows, "max_result_bytes": sink.sql_max_result_bytes,
            "max_rows_to_read": sink.sql_max_rows_to_read}


@dataclass(frozen=True)
class Ran:
    """What the engine answered and counted (ClickHouse's X-ClickHouse-Summary numbers)."""

    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    elapsed_ns: int = 0


@dataclass(frozen=True)
class Answer:
    body: bytes
    format: str
    query_id: str
    ran: Ran | None = None

    def summary(self) -> dict[str, str]:
        """ClickHouse's ``X-ClickHouse-Summary`` (every value a string, as ClickHouse sends them)."""
        ran = self.ran or Ran(self.body)
        return {"read_rows": str(ran.read_rows), "read_bytes": str(ran.read_bytes),
                "written_rows": str(ran.written_rows), "written_bytes": str(ran.written_bytes),
                "total_rows_to_read": str(ran.read_rows), "result_rows": str(ran.result_rows),
                "result_bytes": str(len(self.body)), "elapsed_ns": str(ran.elapsed_ns)}


class EngineError(Exception):
    """ClickHouse's own error text (``Code: N. DB::Exception: ...``)."""


def _clickhouse_text(exc: Exception) -> str:
    text = str(exc)
    at = text.find("Code: ")
    return text[at:].strip() if at > 0 else text.strip()


def _quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tsv_escaped(text: str) -> str:
    """Query parameter values are read in TSV's escaped form: a raw newline or tab would end the value."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class _ChdbEngine:
    """Fresh handles on the embedded engine (same path string as the sink's client: chDB compares it)."""

    def __init__(self, ch: ClickHouseSettings) -> None:
        self.path = str(ch.path.resolve())

    @contextlib.contextmanager
    def handle(self, settings: dict[str, Any], database: str | None, readonly: bool) -> Iterator[Any]:
        import chdb

        conn = chdb.connect(self.path)
        try:
            if database:
                self._run(conn, f"USE {_ident(database)}")
            for name, value in settings.items():
                self._run(conn, f"SET {name} = {_quote(value)}")
            if readonly:
                self._run(conn, "SET readonly = 1")  # last: from here on no setting can change
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _run(conn: Any, sql: str, fmt: str = "RawBLOB", params: dict[str, str] | None = None) -> bytes:
        return _ChdbEngine._counted(conn, sql, fmt, params).body

    @staticmethod
    def _counted(conn: Any, sql: str, fmt: str, params: dict[str, str] | None) -> Ran:
        try:
            result = conn.query(sql, fmt, params=params or {})
            # chDB's rows_read() counts the rows of the answer; storage_rows_read() what was read
            return Ran(result.bytes(), read_rows=result.storage_rows_read(), read_bytes=result.storage_bytes_read(),
                       written_rows=result.rows_written(), written_bytes=result.bytes_written(),
                       result_rows=result.rows_read(), elapsed_ns=int(result.elapsed() * 1e9))
        except Exception as exc:  # chDB raises RuntimeError with ClickHouse's text
            raise EngineError(_clickhouse_text(exc)) from None

    def query(self, sql: str, fmt: str, settings: dict[str, Any], database: str | None, readonly: bool,
              params: dict[str, str] | None = None) -> bytes:
        return self.run(sql, fmt, settings, database, readonly, params).body

    def run(self, sql: str, fmt: str, settings: dict[str, Any], database: str | None, readonly: bool,
            params: dict[str, str] | None = None) -> Ran:
        with self.handle(settings, database, readonly) as conn:
            return self._counted(conn, sql, fmt, params)


class _ServerEngine:
    """A ClickHouse server: the same settings ride on each HTTP request (per query by nature)."""

    def __init__(self, ch: ClickHouseSettings) -> None:
        import clickhouse_connect

        self.client = clickhouse_connect.get_client(dsn=ch.url)

    def query(self, sql: str, fmt: str, settings: dict[str, Any], database: str | None, readonly: bool,
              params: dict[str, str] | None = None) -> bytes:
        all_settings = {**settings, **({"readonly": 1} if readonly else {}),
                        **{f"param_{k}": v for k, v in (params or {}).items()}}
        if database:
            all_settings["database"] = database
        try:
            return self.client.raw_query(sql, fmt=fmt, settings=all_settings)
        except Exception as exc:  # noqa: BLE001 - clickhouse-connect's DatabaseError carries ClickHouse's text
            raise EngineError(_clickhouse_text(exc)) from None

    def run(self, sql: str, fmt: str, settings: dict[str, Any], database: str | None, readonly: bool,
            params: dict[str, str] | None = None) -> Ran:
        """Counts are not carried through here (raw_query drops the server's summary header)."""
        return Ran(self.query(sql, fmt, settings, database, readonly, params))


class Database:
    """One per process that owns the data: ``write`` for the sink, ``analyst_query`` for the endpoint."""

    def __init__(self, ch: ClickHouseSettings, sink: SinkSettings) -> None:
        self.ch_settings = ch
        self.limits = read_limits(sink)
        self.client: Any = None  # the write lane's clickhouse-connect client, after open()
        self._write = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-write")
        self._read = ThreadPoolExecutor(max_workers=sink.sql_max_concurrent_reads, thread_name_prefix="clickhouse-read")
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-probe")
        self._engine: _ChdbEngine | _ServerEngine | None = None
        self._server_revision: int | None = None
        self._timezone: str | None = None

    # ------------------------------------------------------------ lanes
    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The write lane: one thread, because one clickhouse-connect chDB client is not safe concurrently."""
        return await asyncio.get_running_loop().run_in_executor(self._write, lambda: fn(*args, **kwargs))

    async def open(self) -> Any:
        from pipeline.storage.clickhouse import connect

        self.client = await self.write(connect, self.ch_settings)
        return self.client

    def engine(self) -> _ChdbEngine | _ServerEngine:
        if self._engine is None:
            self._engine = _ChdbEngine(self.ch_settings) if self.ch_settings.embedded else _ServerEngine(self.ch_settings)
        return self._engine

    async def analyst_query(self, sql: str, default_format: str, params: dict[str, str], admin: bool = False,
                            database: str | None = None, query_id: str | None = None) -> Answer:
        """Run one request of the SQL endpoint on the read lane (see ``run_analyst_query``)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._read, lambda: self.run_analyst_query(sql, default_format, params, admin, database, query_id))

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """``SELECT 1`` on a handle of its own in the probe lane."""
        loop = asyncio.get_running_loop()
        try:
            out = await asyncio.wait_for(loop.run_in_executor(
                self._probe, lambda: self.engine().query("SELECT 1", "TabSeparated", {}, None, True)), timeout_s)
            return out.strip() == b"1"
        except Exception:  # noqa: BLE001 - any failure is "not ok"
            return False

    def close(self) -> None:
        for pool in (self._read, self._probe):
            pool.shutdown(wait=False, cancel_futures=True)
        if self.client is not None:
            self.client.close()
        self._write.shutdown(wait=True)

    # ------------------------------------------------------------ the analyst path (sync, any thread)
    def parse(self, sql: str, params: dict[str, str] | None = None) -> tuple[str, list[Any]]:
        """(formatted single statement, its AST roots), both from the engine, on a read-only handle."""
        engine = self.engine()
        guard = {"max_execution_time": PARSE_TIMEOUT_S}
        formatted = engine.query("SELECT formatQuery({q:String})", "RawBLOB", guard, None, True, {"q": _tsv_escaped(sql)}).decode()
        ast = engine.query("EXPLAIN AST " + formatted, "TabSeparatedRaw", guard, None, True, params).decode()
        return formatted, parse_explain_ast(ast)

    def run_analyst_query(self, sql: str, default_format: str, params: dict[str, str], admin: bool = False,
                          database: str | None = None, query_id: str | None = None) -> Answer:
        """Parse, judge, run. Reads: readonly=1 and the operator's limits on a handle of their own.
        Admin writes: the same checks, the same limits, without readonly. Raises SqlRefused or EngineError."""
        query_id = query_id or str(uuid.uuid4())
        settings = client_settings(params, self.limits)
        query_params = {k[len("param_"):]: v for k, v in settings.items() if k.startswith("param_")}
        settings = {k: v for k, v in settings.items() if not k.startswith("param_")}
        per_query = {**HANDLE_SETTINGS, **self.limits, **settings}
        formatted, roots = self.parse(sql, query_params)
        verdict = check(roots, admin, formatted)
        fmt = verdict.format or default_format
        # Native in the layout of the client's protocol revision (clickhouse-go sends 54460): chDB writes
        # revision 0, as ClickHouse's HTTP interface does when no revision is given (native_format.py)
        revision = parse_revision(params.get("client_protocol_version"), self.server_revision()) \
            if fmt == "Native" else 0
        if verdict.is_read:
            ran = self.engine().run(formatted, fmt, per_query, database, True, query_params)
            return Answer(to_revision(ran.body, revision), fmt, query_id, ran)
        statement = formatted
        if roots[0].kind == "InsertQuery" and not any(c.kind == "SelectWithUnionQuery" for c in roots[0].children):
            statement = self._inline_insert(sql)
        ran = self.engine().run(statement, fmt, per_query, database, False, query_params)
        return Answer(b"", fmt, query_id, ran)

    def server_timezone(self) -> str:
        """The engine's time zone (``X-ClickHouse-Timezone``; drivers read DateTime without a zone in it).
        Asked once: it is the process's, fixed for its life."""
        if self._timezone is None:
            self._timezone = self.engine().query("SELECT timezone()", "TabSeparatedRaw", {}, None, True).decode().strip()
        return self._timezone

    def server_revision(self) -> int:
        """The engine's own protocol revision (``SELECT revision()``, what clickhouse-go's hello reads):
        the newest layout a client may ask for."""
        if self._server_revision is None:
            out = self.engine().query("SELECT revision()", "TabSeparated", {}, None, True)
            self._server_revision = int(out.strip())
        return self._server_revision

    @staticmethod
    def _inline_insert(sql: str) -> str:
        """``INSERT ... VALUES (...)`` carries its data after the part the parser formats, so the client's
        own text has to run. chDB would run anything after a ``;`` in it as another statement, so a ``;``
        anywhere but at the end is refused (conservatively: also one inside the data)."""
        text = sql.strip().rstrip(";").rstrip()
        if ";" in text:
            raise SqlRefused("an INSERT with inline data may not contain ';' on this endpoint (chDB would run what "
                             "follows as another statement); use INSERT ... SELECT or a client's insert API")
        return text
