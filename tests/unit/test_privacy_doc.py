"""docs/privacy.md lists, per column, the tables where personal data can be: checked against the
table definitions both ways (no stale line, no table left out)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.storage.tables import ALL_TABLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"
# Columns that can hold personal data whatever the table: they must always be in the doc.
MUST_LIST = {"user_id", "anonymous_id", "session_id", "url", "request_url", "user_agent", "message", "stacktrace",
             "breadcrumbs", "tags", "text", "properties", "payload", "selector"}


def documented() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        for column in re.findall(r"`(\w+)`", cells[0]):
            out.setdefault(column, set()).update(t.strip() for t in cells[1].split(","))
    return out


def test_every_documented_column_is_listed_with_exactly_the_tables_that_have_it() -> None:
    doc = documented()
    assert MUST_LIST <= set(doc), f"missing from docs/privacy.md: {sorted(MUST_LIST - set(doc))}"
    actual: dict[str, set[str]] = {}
    for table in ALL_TABLES:
        for column in table.column_names:
            actual.setdefault(column, set()).add(table.name)
    for column, tables in doc.items():
        assert column in actual, f"docs/privacy.md lists `{column}`, which no table has"
        assert tables == actual[column], (f"`{column}`: docs/privacy.md says {sorted(tables)}, "
                                          f"the tables that have it are {sorted(actual[column])}")
