"""The judgement on ClickHouse's AST (EXPLAIN AST text as chDB 26.9 prints it) and on client settings."""

from __future__ import annotations

import pytest

from pipeline.storage.sql_policy import SqlRefused, check, client_settings, parse_explain_ast

SELECT_FILE_IN_SUBQUERY = """Explain EXPLAIN (children 1)
 SelectWithUnionQuery (children 1)
  ExpressionList (children 1)
   SelectQuery (children 1)
    ExpressionList (children 1)
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
       ExpressionList (children 1)
        SelectQuery (children 2)
         ExpressionList (children 1)
          Identifier line
         TablesInSelectQuery (children 1)
          TablesInSelectQueryElement (children 1)
           TableExpression (children 1)
            Function file (children 1)
             ExpressionList (children 1)
              Literal '/etc/passwd'
"""
SELECT_NUMBERS_FORMAT_JSON = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function numbers (alias n) (children 1)
       ExpressionList (children 1)
        Literal UInt64_3
 Identifier JSON
"""
OUTFILE = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal 'a.txt'
"""
NEW_TABLE_FUNCTION = SELECT_NUMBERS_FORMAT_JSON.replace("Function numbers", "Function brandNewLake")
TWO_STATEMENTS = "SelectWithUnionQuery (children 1)\n ExpressionList\nDropQuery  t (children 1)\n Identifier t\n"
CREATE_URL_TABLE = """CreateQuery u (children 3)
 Identifier u
 Columns definition (children 1)
  ExpressionList (children 1)
   ColumnDeclaration x (children 1)
    DataType UInt8
 Storage definition (children 1)
  Function URL (children 1)
   ExpressionList (children 2)
    Literal 'http://x'
"""
CREATE_MERGETREE = CREATE_URL_TABLE.replace("Function URL", "Function MergeTree")
NESTED_SETTINGS = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Subquery (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          ExpressionList (children 1)
           Literal UInt64_1
          Set
"""


def test_a_plain_read_passes_with_its_format() -> None:
    verdict = check(parse_explain_ast(SELECT_NUMBERS_FORMAT_JSON), admin=False)
    assert verdict.is_read and verdict.format == "JSON"


@pytest.mark.parametrize(("ast", "admin", "words"), [
    (SELECT_FILE_IN_SUBQUERY, False, "file()"),
    (SELECT_FILE_IN_SUBQUERY, True, "file()"),
    (OUTFILE, True, "INTO OUTFILE"),
    (NEW_TABLE_FUNCTION, False, "allow-list"),
    (TWO_STATEMENTS, True, "one statement"),
    ("DropQuery  t (children 1)\n Identifier t\n", False, "DROP is not a read"),
    ("Explain EXPLAIN AST (children 1)\n DropQuery  t (children 1)\n  Identifier t\n", False, "not a read"),
    (CREATE_URL_TABLE, True, "URL"),
    (CREATE_URL_TABLE.replace("Function URL", "Function Distributed"), True, "engine Distributed"),
    (NESTED_SETTINGS, False, "SETTINGS"),
])
def test_refusals(ast: str, admin: bool, words: str) -> None:
    with pytest.raises(SqlRefused, match=words) as info:
        check(parse_explain_ast(ast), admin=admin)
    assert str(info.value).startswith("Code: ")


def test_admin_may_create_a_table_inside_the_database_readers_may_not() -> None:
    assert not check(parse_explain_ast(CREATE_MERGETREE), admin=True).is_read
    with pytest.raises(SqlRefused, match="CreateQuery|CREATE"):
        check(parse_explain_ast(CREATE_MERGETREE), admin=False)


LIMITS = {"max_result_rows": 1000, "max_execution_time": 30}


def test_client_settings_allow_list() -> None:
    got = client_settings({"query": "x", "default_format": "JSON", "compress": "1", "readonly": "1",
                           "output_format_json_quote_64bit_integers": "0", "session_timezone": "UTC",
                           "max_result_rows": "10", "param_n": "4"}, LIMITS)
    assert got == {"output_format_json_quote_64bit_integers": "0", "session_timezone": "UTC",
                   "max_result_rows": "10", "param_n": "4"}


def test_show_tables_from_a_database_is_not_a_format() -> None:
    from_db = parse_explain_ast("ShowTables (children 1)\n Identifier pulse\n")
    assert check(from_db, admin=False, formatted="SHOW TABLES FROM pulse").format is None
    as_json = parse_explain_ast("ShowTables (children 1)\n Identifier JSON\n")
    assert check(as_json, admin=False, formatted="SHOW TABLES\nFORMAT JSON").format == "JSON"
    both = parse_explain_ast("ShowTables (children 2)\n Identifier pulse\n Identifier JSON\n")
    assert check(both, admin=False, formatted="SHOW TABLES FROM pulse\nFORMAT JSON").format == "JSON"


def test_a_driver_deadline_above_the_time_limit_is_lowered_to_it_never_raised() -> None:
    assert client_settings({"max_execution_time": "65"}, LIMITS) == {"max_execution_time": "30"}
    assert client_settings({"max_execution_time": "15"}, LIMITS) == {"max_execution_time": "15"}
    assert client_settings({"max_execution_time": "65"}, {"max_execution_time": 0}) == {"max_execution_time": "65"}
    assert client_settings({"limit": "100"}, LIMITS) == {"limit": "100"}  # Grafana's row limit option


@pytest.mark.parametrize(("params", "code"), [
    ({"readonly": "0"}, 164), ({"allow_ddl": "1"}, 164), ({"max_execution_time": "0"}, 452),
    ({"max_result_rows": "1000000"}, 452), ({"bad name": "1"}, 115)])
def test_client_settings_refused_like_clickhouse(params: dict[str, str], code: int) -> None:
    with pytest.raises(SqlRefused) as info:
        client_settings(params, LIMITS)
    assert info.value.code == code and f"Code: {code}." in str(info.value)


SELECT_FROM_UPPER_VALUES = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier c1
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function VALUES (children 1)
       ExpressionList (children 2)
        Literal 'c1 String'
        Literal 'a'
"""


def test_allowed_table_functions_match_without_case_external_ones_still_refused() -> None:
    """The JDBC driver's getTypeInfo reads ``FROM VALUES(...)`` (ClickHouse's own spelling varies)."""
    assert check(parse_explain_ast(SELECT_FROM_UPPER_VALUES), admin=False).is_read
    with pytest.raises(SqlRefused):
        check(parse_explain_ast(SELECT_FROM_UPPER_VALUES.replace("Function VALUES", "Function FILE")), admin=False)
    with pytest.raises(SqlRefused):
        check(parse_explain_ast(SELECT_FROM_UPPER_VALUES.replace("Function VALUES", "Function someNewFunction")),
              admin=False)
