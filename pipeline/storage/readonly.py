"""Make an analyst's SQL safe to run next to the sink's writes. Pure.

ClickHouse enforces the guarantee: SELECT/WITH queries run with a query-level
``SETTINGS readonly = 1`` (which also refuses table functions such as ``file()``). Per-call
settings cannot be used on chDB: they are applied with SET on the shared session, and readonly=1
cannot be reset afterwards, so the sink's own inserts would then fail. The keyword check in front
refuses what readonly does not cover (``INTO OUTFILE``) and more than one statement.
"""

from __future__ import annotations

import re

READ_KEYWORDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
_TRAILING_SETTINGS = re.compile(r"\bSETTINGS\s+[A-Za-z_]\w*\s*=[^()]*$", re.IGNORECASE)


class ReadOnlyViolation(ValueError):
    """Worded like ClickHouse's READONLY error (code 164) so clients see the familiar text."""

    def __init__(self, why: str) -> None:
        super().__init__(f"Code: 164. DB::Exception: {why}: Cannot execute query in readonly mode. (READONLY)")


class UnknownStatement(ReadOnlyViolation):
    """Not a statement ClickHouse knows (a typo such as ``SELEC``): a syntax error (code 62, HTTP 400),
    as ClickHouse itself would answer, rather than a refusal."""

    def __init__(self, word: str) -> None:
        ValueError.__init__(self, f"Code: 62. DB::Exception: Syntax error: failed at position 1 ({word[:40]!r}): "
                                  f"unknown statement. (SYNTAX_ERROR)")


# Statements ClickHouse knows that are not reads: refused (403) rather than reported as syntax errors.
STATEMENT_KEYWORDS = frozenset(
    "INSERT CREATE DROP ALTER TRUNCATE DELETE UPDATE RENAME OPTIMIZE SYSTEM KILL GRANT REVOKE SET USE ATTACH "
    "DETACH EXCHANGE UNDROP BACKUP RESTORE CHECK BEGIN COMMIT ROLLBACK MOVE WATCH REPLACE UPSERT".split())


def make_read_only(sql: str) -> str:
    """Return SQL that ClickHouse will run read-only, or raise ReadOnlyViolation."""
    stripped = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
    bare = _STRINGS.sub("''", stripped)  # keywords inside string literals do not count
    if ";" in bare:
        raise ReadOnlyViolation("only one statement per request")
    words = bare.split(None, 1)
    first = words[0].upper() if words else ""
    if first not in READ_KEYWORDS:
        if first and first not in STATEMENT_KEYWORDS:
            raise UnknownStatement(words[0])
        raise ReadOnlyViolation(f"{first or 'empty query'} is not a read query")
    if re.search(r"\bINTO\s+OUTFILE\b", bare, re.IGNORECASE):
        raise ReadOnlyViolation("INTO OUTFILE is not allowed")
    if first in ("SELECT", "WITH"):
        joiner = ", " if _TRAILING_SETTINGS.search(bare) else " SETTINGS "
        return f"{stripped}{joiner}readonly = 1"
    return stripped


def admin_statement(sql: str) -> str:
    """For an endpoint that allows writes (``PULSE_SINK_SQL_ALLOW_WRITES``): reads stay read-only,
    any other known statement runs as written, still one per request."""
    try:
        return make_read_only(sql)
    except UnknownStatement:
        raise
    except ReadOnlyViolation:
        stripped = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
        bare = _STRINGS.sub("''", stripped)
        if ";" in bare:
            raise ReadOnlyViolation("only one statement per request") from None
        if re.search(r"\bINTO\s+OUTFILE\b", bare, re.IGNORECASE):
            raise ReadOnlyViolation("INTO OUTFILE is not allowed") from None
        return stripped


FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)


def split_format(sql: str, default: str) -> tuple[str, str]:
    """Lift a trailing FORMAT clause out of the SQL (the client adds its own)."""
    sql = sql.strip().rstrip(";").strip()
    m = FORMAT_CLAUSE.search(sql)
    return (sql[: m.start()], m.group(1)) if m else (sql, default)
