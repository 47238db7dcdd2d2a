"""What an analyst's SQL may do, decided on ClickHouse's own parse of it. Pure.

The engine parses (``formatQuery`` refuses a second statement; ``EXPLAIN AST`` of the formatted,
single statement gives the tree, see ``pipeline/storage/database.py``); this module only reads that
tree. No keyword matching over the client's text: dollar quotes, comments, unicode and escapes are
the parser's business, so nothing a client writes can hide a statement from it.

Rules (the engine then runs reads with ``readonly = 1`` on a handle of their own, which also refuses
``file()``/``url()`` and every SETTINGS clause by itself; these checks are the layer in front):
  * exactly one statement (one root in the AST);
  * a reader's statement is a read: SELECT/WITH/UNION, SHOW, DESCRIBE, EXISTS, EXPLAIN of a read;
  * a table function must be on ``TABLE_FUNCTIONS_ALLOWED`` (an allow-list: new ones are refused);
    the ones that reach outside the database are refused anywhere in the tree, even as arguments;
  * ``INTO OUTFILE`` and ``SETTINGS`` clauses (at any depth) are refused for everyone;
  * an admin write (``PULSE_SINK_SQL_ALLOW_WRITES``) follows the same rules, may not create a table
    whose engine reaches outside (``ENGINES_ALLOWED``), nor a dictionary (its source could).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Table functions that only read what the database already holds or generate data.
TABLE_FUNCTIONS_ALLOWED = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generateRandom", "generate_series", "generateSeries",
    "view", "merge", "null"})
# Compared without case: ClickHouse registers some case-insensitively (the JDBC driver's getTypeInfo
# sends ``VALUES(...)``); a name that differs only in case is either the same function or unknown.
TABLE_FUNCTIONS_ALLOWED_LOWER = frozenset(name.lower() for name in TABLE_FUNCTIONS_ALLOWED)
# Reach outside the database (files, network, processes, other servers): refused wherever they appear.
EXTERNAL_FUNCTIONS = frozenset(name.lower() for name in {
    "file", "fileCluster", "url", "urlCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
    "s3", "s3Cluster", "gcs", "oss", "cosn", "hdfs", "hdfsCluster", "azureBlobStorage", "azureBlobStorageCluster",
    "executable", "input", "mysql", "postgresql", "mongodb", "jdbc", "odbc", "sqlite", "redis", "dictionary",
    "iceberg", "icebergS3", "icebergAzure", "icebergHDFS", "icebergLocal", "deltaLake", "deltaLakeS3",
    "deltaLakeAzure", "deltaLakeLocal", "hudi", "paimon", "arrowFlight", "arrowflight", "ytsaurus", "prometheusQuery",
    "timeSeriesData"})
# Engines an admin may create: data stays inside the database.
ENGINES_ALLOWED = frozenset({
    "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree",
    "VersionedCollapsingMergeTree", "GraphiteMergeTree", "CoalescingMergeTree", "Memory", "Log", "TinyLog",
    "StripeLog", "Null", "Set", "Join", "Buffer", "View", "MaterializedView", "Merge"})
READ_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "ExistsTableQuery",
                        "ShowTables", "ShowCreateTableQuery", "ShowColumns", "ShowIndexes", "ShowProcesslistQuery",
                        "ShowEnginesQuery", "ShowFunctionsQuery", "ShowSettingQuery"})
QUERY_ROOTS_WITH_CLAUSES = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain"})


class SqlRefused(ValueError):
    """Worded like ClickHouse's own errors so clients show the familiar text; ``code`` as ClickHouse's."""

    def __init__(self, why: str, code: int = 164, name: str = "READONLY", statement: bool = True) -> None:
        self.code, self.name = code, name
        suffix = ": Cannot execute query in readonly mode" if code == 164 and statement else ""
        super().__init__(f"Code: {code}. DB::Exception: {why}{suffix}. ({name})")


@dataclass
class Node:
    """One line of ``EXPLAIN AST``: its kind (``Function``, ``SelectQuery``...), the rest of the line."""

    kind: str
    detail: str
    children: list["Node"] = field(default_factory=list)

    @property
    def name(self) -> str:
        """For ``Function file (alias u) (children 1)``: ``file``."""
        return self.detail.split(" ", 1)[0] if self.detail else ""

    def walk(self, parent: "Node | None" = None):  # type: ignore[no-untyped-def]
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


def parse_explain_ast(text: str) -> list[Node]:
    """The roots of ``EXPLAIN AST`` output (one space of indent per level). More than one root means
    more than one statement."""
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, detail = line.strip().partition(" ")
        if kind in ("Columns", "Storage", "Dictionary") and detail.split(" ", 1)[0] in ("definition",):
            kind, detail = f"{kind} definition", detail[len("definition"):].strip()
        node = Node(kind, detail)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((depth, node))
    return roots


@dataclass(frozen=True)
class Verdict:
    is_read: bool
    format: str | None  # the statement's own FORMAT clause, if any


def check(roots: list[Node], admin: bool, formatted: str = "") -> Verdict:
    """Refuse (raise SqlRefused) or say what the statement is. ``admin``: writes are allowed;
    ``formatted``: the engine's formatted statement (tells ``SHOW TABLES FROM db`` from ``... FORMAT X``)."""
    if len(roots) != 1:
        raise SqlRefused("only one statement per request" if roots else "empty query",
                         *((62, "SYNTAX_ERROR") if not roots else (164, "READONLY")))
    root = roots[0]
    is_read = _is_read(root)
    if not is_read and not admin:
        raise SqlRefused(f"{_statement_word(root)} is not a read query")
    for node, parent in root.walk():
        if node.kind == "Function" and node.name.lower() in EXTERNAL_FUNCTIONS:
            raise SqlRefused(f"table function or function {node.name}() reaches outside the database and is not "
                             "allowed on this endpoint")
        if node.kind == "Function" and parent is not None and parent.kind in ("TableExpression", "InsertQuery") \
                and node.name.lower() not in TABLE_FUNCTIONS_ALLOWED_LOWER:
            raise SqlRefused(f"table function {node.name}() is not on this endpoint's allow-list "
                             f"({', '.join(sorted(TABLE_FUNCTIONS_ALLOWED))})")
        if node.kind == "Function" and parent is not None and parent.kind == "Storage definition" \
                and node.name not in ENGINES_ALLOWED:
            raise SqlRefused(f"table engine {node.name} reaches outside the database or is not on this endpoint's "
                             "allow-list")
        if node.kind == "Set":  # a nested SETTINGS clause is not covered by readonly=1 on the handle
            raise SqlRefused("SETTINGS clauses are not allowed on this endpoint (send allowed settings as URL "
                             "parameters); the operator's limits apply", 164, "READONLY", statement=False)
        if node.kind == "Dictionary definition":
            raise SqlRefused("dictionaries are not created through this endpoint (their sources reach outside)")
        if node.kind == "Literal" and parent is not None and parent.kind in QUERY_ROOTS_WITH_CLAUSES:
            raise SqlRefused("INTO OUTFILE is not allowed")
    return Verdict(is_read, _format_of(root, formatted))


def _is_read(root: Node) -> bool:
    if root.kind == "Explain":
        return len(root.children) >= 1 and _is_read(root.children[0])
    return root.kind in READ_ROOTS


def _format_of(root: Node, formatted: str = "") -> str | None:
    """``SELECT ... FORMAT JSON``: an Identifier after the query's body. For SHOW TABLES/DATABASES the
    AST cannot tell ``FROM db`` from ``FORMAT X`` (both one Identifier): the formatted text ends in
    ``FORMAT X`` when there is one."""
    if root.kind in QUERY_ROOTS_WITH_CLAUSES:
        return next((child.name for child in root.children[1:] if child.kind == "Identifier"), None)
    if root.kind == "ShowTables":
        last = next((child.name for child in reversed(root.children) if child.kind == "Identifier"), None)
        words = formatted.split()
        return last if last is not None and words[-2:] == ["FORMAT", last] else None
    return None


def _statement_word(root: Node) -> str:
    words = {"InsertQuery": "INSERT", "DropQuery": "DROP", "CreateQuery": "CREATE", "AlterQuery": "ALTER",
             "Set": "SET", "UseQuery": "USE", "SYSTEM": "SYSTEM", "KillQueryQuery": "KILL", "RenameQuery": "RENAME",
             "OptimizeQuery": "OPTIMIZE", "TruncateQuery": "TRUNCATE", "DeleteQuery": "DELETE", "CheckQuery": "CHECK"}
    return words.get(root.kind, root.kind)


# ---------------------------------------------------------------- client settings
# Transport parameters of ClickHouse's HTTP interface: consumed (or ignored) by the endpoint, never settings.
TRANSPORT_PARAMS = frozenset({
    "query", "default_format", "database", "user", "password", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "enable_http_compression", "wait_end_of_query", "buffer_size",
    "client_protocol_version", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "http_wait_end_of_query", "role", "quota_key", "cancel_http_readonly_queries_on_client_close",
    "http_response_buffer_size", "add_http_cors_header", "output_format_parallel_formatting",
    "http_zlib_compression_level"})  # the gzip/deflate level of our own answer (1..9, clamped)
# Settings a client may set for its own query: how the result is written, never what may run.
CLIENT_SETTINGS_ALLOWED = frozenset({
    "session_timezone", "date_time_output_format", "format_csv_delimiter", "format_csv_allow_single_quotes",
    "format_csv_allow_double_quotes", "format_tsv_null_representation", "format_csv_null_representation",
    "extremes", "join_use_nulls", "max_block_size",
    "date_time_input_format", "allow_experimental_analyzer", "enable_analyzer", "joined_subquery_requires_alias",
    "prefer_column_name_to_alias", "totals_mode", "aggregate_functions_null_for_empty", "transform_null_in",
    "limit", "offset"})  # limit/offset: Grafana's "row limit" option; they only cut the result
CLIENT_SETTING_PREFIXES = ("output_format_", "param_")
# A positive value above the operator's limit is lowered to the limit, not refused: drivers send it
# from their own deadline (clickhouse-go adds max_execution_time = context deadline + 5 s to every
# query, so Grafana's 60 s query timeout arrives as 65), and the query still stops at the operator's
# limit. 0 (lift the limit) is still refused.
CLAMPED_TO_THE_LIMIT = frozenset({"max_execution_time"})


def client_settings(params: dict[str, str], limits: dict[str, int | float]) -> dict[str, str]:
    """The per-query settings a client asked for (URL parameters), or SqlRefused like ClickHouse's.

    A client may lower an operator limit (``max_result_rows=10``) but never raise it or lift it
    (0 means unlimited): a raise is refused, except ``max_execution_time``, which is lowered to the
    operator's limit (``CLAMPED_TO_THE_LIMIT``); ``readonly`` may be asked for (1 or 2: reads are
    readonly=1 anyway)."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if name in TRANSPORT_PARAMS:
            continue
        if not name.replace("_", "a").isalnum() or not (name[0].isalpha() or name[0] == "_"):
            raise SqlRefused(f"Unknown setting '{name[:64]}'", 115, "UNKNOWN_SETTING")
        if name == "readonly":
            if str(value) in ("1", "2"):
                continue
            raise SqlRefused("Cannot modify 'readonly' setting in readonly mode", 164, "READONLY", statement=False)
        if name in limits:
            try:
                asked = float(value)
            except ValueError:
                raise SqlRefused(f"Cannot parse '{value[:32]}' as a value of {name}", 27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED") from None
            if 0 < asked <= limits[name] or (limits[name] == 0 and asked >= 0):
                out[name] = value
                continue
            if name in CLAMPED_TO_THE_LIMIT and asked > limits[name] > 0:
                out[name] = str(limits[name])  # the operator's limit stays: the stricter of the two applies
                continue
            raise SqlRefused(f"Setting {name} should not be greater than {limits[name]} (the operator's limit)",
                             452, "SETTING_CONSTRAINT_VIOLATION")
        if name in CLIENT_SETTINGS_ALLOWED or name.startswith(CLIENT_SETTING_PREFIXES):
            out[name] = value
            continue
        raise SqlRefused(f"Cannot modify '{name[:64]}' setting in readonly mode", 164, "READONLY", statement=False)
    return out
