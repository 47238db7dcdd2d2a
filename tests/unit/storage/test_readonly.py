from __future__ import annotations

import pytest

from pipeline.storage.readonly import ReadOnlyViolation, make_read_only, split_format


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1 SETTINGS readonly = 1"),
        ("  select count() from errors; ", "select count() from errors SETTINGS readonly = 1"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x SETTINGS readonly = 1"),
        ("SELECT 1 SETTINGS max_threads = 2", "SELECT 1 SETTINGS max_threads = 2, readonly = 1"),
        ("-- top errors\nSELECT 1", "SELECT 1 SETTINGS readonly = 1"),
        ("SHOW TABLES", "SHOW TABLES"),
        ("DESCRIBE TABLE errors", "DESCRIBE TABLE errors"),
        ("SELECT 'a;b' AS s", "SELECT 'a;b' AS s SETTINGS readonly = 1"),
    ],
)
def test_read_queries_get_a_query_level_readonly_setting(sql: str, expected: str) -> None:
    assert make_read_only(sql) == expected


@pytest.mark.parametrize(
    "sql",
    ["INSERT INTO errors VALUES (1)", "DROP TABLE errors", "ALTER TABLE errors DELETE WHERE 1", "",
     "SELECT 1; DROP TABLE errors", "SELECT 1 INTO OUTFILE '/tmp/x'", "/* hi */ TRUNCATE errors", "SET readonly = 0"],
)
def test_everything_else_is_refused_with_clickhouse_wording(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=r"Code: 164\. .*\(READONLY\)"):
        make_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "result"),
    [("SELECT 1", ("SELECT 1", "TSV")), ("SELECT 1 FORMAT JSON", ("SELECT 1", "JSON")),
     ("select format from t format CSV;", ("select format from t", "CSV")), ("SELECT 1 FORMAT", ("SELECT 1 FORMAT", "TSV"))],
)
def test_trailing_format_clause_is_lifted(sql: str, result: tuple[str, str]) -> None:
    assert split_format(sql, "TSV") == result


def test_an_unknown_statement_is_a_syntax_error_not_a_refusal() -> None:
    with pytest.raises(ReadOnlyViolation, match=r"Code: 62\. .*\(SYNTAX_ERROR\)"):
        make_read_only("SELEC 1")


def test_admin_statement_keeps_reads_read_only_and_lets_one_write_through() -> None:
    from pipeline.storage.readonly import admin_statement

    assert admin_statement("SELECT 1").endswith("SETTINGS readonly = 1")
    assert admin_statement("INSERT INTO t VALUES (1);") == "INSERT INTO t VALUES (1)"
    assert admin_statement("ALTER TABLE errors DELETE WHERE user_id = 'u'") == "ALTER TABLE errors DELETE WHERE user_id = 'u'"
    with pytest.raises(ReadOnlyViolation, match="one statement"):
        admin_statement("DROP TABLE a; DROP TABLE b")
    with pytest.raises(ReadOnlyViolation, match="OUTFILE"):
        admin_statement("SELECT * FROM errors INTO OUTFILE '/tmp/x'")
    with pytest.raises(ReadOnlyViolation, match="SYNTAX_ERROR"):
        admin_statement("SELEC 1")


def test_writes_need_an_access_key() -> None:
    from pydantic import ValidationError

    from pipeline.settings import SinkSettings

    with pytest.raises(ValidationError, match="needs PULSE_SINK_SQL_ACCESS_KEY"):
        SinkSettings(sql_allow_writes=True)
    assert SinkSettings(sql_allow_writes=True, sql_access_key="k").sql_allow_writes
