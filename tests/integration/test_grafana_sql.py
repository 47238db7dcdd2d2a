"""Every SQL query of the Grafana dashboards that use ClickHouse (deploy/grafana/dashboards), run
on migrated chDB with a small known data set, after expanding the ClickHouse plugin's macros the
way the plugin does (``$__timeFilter(col)`` -> ``col >= toDateTime(<from>) AND col <= toDateTime(<to>)``,
see grafana/clickhouse-datasource pkg/macros) and Grafana's template variables.

Checked: each query runs and returns rows (with the project variable set to one project and to
All), time series start with a DateTime ``time`` column, and the answers are the known ones:
p75 web vitals and their ratings against pipeline/rollups (the same sketch and thresholds), top
issues by events in the range, rage/dead clicks per page, the currently firing alerts.

chDB opens one data directory per process: the queries run in a child process on a tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.rollups.minute import rating
from pipeline.rollups.sketch import key_of, quantile

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
CH_TYPE = "grafana-clickhouse-datasource"
RANGE_S = 6 * 3600
INTERVAL_S = 60
RATING_TEXT = {"good": "good", "ni": "needs improvement", "poor": "poor"}

CHILD = textwrap.dedent("""
    import json, sys
    from pipeline.settings import ClickHouseSettings, Settings
    from pipeline.storage.clickhouse import connect
    from pipeline.storage.migrations import migrate

    job = json.load(sys.stdin)
    settings = Settings(clickhouse=ClickHouseSettings(path=sys.argv[1]))
    client = connect(settings.clickhouse)

    def plain(v):
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)

    out = {}
    try:
        migrate(client, settings)
        for statement in job["fixtures"]:
            client.command(statement)
        for key, sql in job["queries"].items():
            try:
                r = client.query(sql)
                out[key] = {"columns": list(r.column_names), "types": [t.name for t in r.column_types],
                            "rows": [[plain(v) for v in row] for row in r.result_rows]}
            except Exception as exc:  # noqa: BLE001 - reported per query
                out[key] = {"error": str(exc)[:3000]}
    finally:
        client.close()
    print(json.dumps(out))
""")


# ------------------------------------------------------------------ Grafana -> concrete SQL

def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the macro call whose '(' is at ``open_paren`` (commas at depth 1 split), and the
    index after its ')'."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    raise AssertionError(f"unbalanced macro call in {sql[open_paren - 20:open_paren + 40]!r}")


def expand(sql: str, variables: dict[str, list[str] | None], frm: int, to: int) -> str:
    """Grafana + ClickHouse plugin expansion. ``variables``: name -> selected values, None = All."""
    # $__conditionalAll(condition, $var) (plugin front end, before variables): 1=1 for All
    while (at := sql.rfind("$__conditionalAll(")) != -1:
        args, end = _macro_args(sql, at + len("$__conditionalAll"))
        assert len(args) == 2, args
        name = re.sub(r"^\$\{?(\w+).*$", r"\1", args[1])
        assert name in variables, f"$__conditionalAll on unknown variable {args[1]}"
        sql = sql[:at] + ("1=1" if variables[name] is None else args[0]) + sql[end:]

    def var(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        assert name in variables, f"unknown variable ${name}"
        values = variables[name] or ["demo", "other"]
        if fmt == "singlequote":
            return ", ".join(f"'{v}'" for v in values)
        assert fmt is None, f"format :{fmt} not handled here"
        return values[0] if len(values) == 1 else ", ".join(f"'{v}'" for v in values)

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)", var, sql)

    def time_filter(col: str, fn: str, conv: Any) -> str:
        return f"{col} >= {fn}({conv(frm)}) AND {col} <= {fn}({conv(to)})"

    calls = {
        "timeFilter": lambda a: time_filter(a[0], "toDateTime", int),
        "timeFilter_ms": lambda a: time_filter(a[0], "fromUnixTimestamp64Milli", lambda t: t * 1000),
        "dateFilter": lambda a: f"{a[0]} >= toDate({frm}) AND {a[0]} <= toDate({to})",
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {INTERVAL_S} second)",
        "timeInterval_ms": lambda a: f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {INTERVAL_S * 1000} millisecond)",
    }
    while m := re.search(r"\$__(\w+)\(", sql):
        assert m.group(1) in calls, f"macro $__{m.group(1)}(...) is not expanded here"
        args, end = _macro_args(sql, m.end() - 1)
        sql = sql[:m.start()] + calls[m.group(1)](args) + sql[end:]
    plain = {"fromTime": f"toDateTime({frm})", "toTime": f"toDateTime({to})",
             "fromTime_ms": f"fromUnixTimestamp64Milli({frm * 1000})",
             "toTime_ms": f"fromUnixTimestamp64Milli({to * 1000})", "interval_s": str(INTERVAL_S)}
    sql = re.sub(r"\$__(\w+)", lambda m: plain[m.group(1)], sql)
    assert "$" not in sql, f"unexpanded: {sql}"
    return sql


def test_expand_follows_the_plugin() -> None:
    sql = ("SELECT $__timeInterval(t) AS time FROM x WHERE $__timeFilter(t) AND "
           "$__conditionalAll(p IN (${project:singlequote}), $project) AND $__interval_s > 0")
    assert expand(sql, {"project": ["a", "b"]}, 100, 200) == (
        f"SELECT toStartOfInterval(toDateTime(t), INTERVAL {INTERVAL_S} second) AS time FROM x WHERE "
        f"t >= toDateTime(100) AND t <= toDateTime(200) AND p IN ('a', 'b') AND {INTERVAL_S} > 0")
    assert "1=1" in expand(sql, {"project": None}, 100, 200)


# ------------------------------------------------------------------------------- the data

def sketch_sql(values: list[float]) -> str:
    counts = Counter(key_of(v) for v in values)
    pairs = ", ".join(f"{k}, {n}" for k, n in sorted(counts.items()))
    return f"CAST(map({pairs}), 'Map(Int16, UInt64)')"


# per page: (minute offset, values) rows of each vital; merged in the query
VITALS = {
    "/checkout": {"lcp": [[1200, 2600], [3100, 3500]], "inp": [[80, 650], [90, 700]], "cls": [[0.01, 0.3], [0.02, 0.05]]},
    "/": {"lcp": [[1000], []], "inp": [[], []], "cls": [[], []]},
}


def expected_vitals() -> dict[str, dict[str, tuple[float | None, str]]]:
    out: dict[str, dict[str, tuple[float | None, str]]] = {}
    for page, vitals in VITALS.items():
        out[page] = {}
        for name, rows in vitals.items():
            merged = Counter(key_of(v) for row in rows for v in row)
            q = quantile(merged, 0.75)
            out[page][name] = (q, "" if q is None else RATING_TEXT[rating(name.upper(), q) or ""])
    return out


def fixtures() -> list[str]:
    stmts = []
    for page, vitals in VITALS.items():
        for i in range(2):
            cols = ["project", "minute", "environment", "release", "page", "browser", "events", "errors", "pageviews",
                    "api_calls", "api_failures"]
            vals = ["'demo'", f"toStartOfMinute(now() - INTERVAL {20 + 10 * i} MINUTE)", "'production'",
                    f"'1.{i}.0'", f"'{page}'", "'Chrome'", "50", "3", "20", "10", "1"]
            for name, rows in vitals.items():
                values = rows[i]
                by_rating = Counter(rating(name.upper(), v) for v in values)
                cols += [f"{name}_good", f"{name}_ni", f"{name}_poor", name]
                vals += [str(by_rating["good"]), str(by_rating["ni"]), str(by_rating["poor"]), sketch_sql(values)]
            stmts.append(f"INSERT INTO rollups_minute ({', '.join(cols)}) VALUES ({', '.join(vals)})")
    stmts.append("INSERT INTO rollups_minute (project, minute, page, errors, pageviews) "
                 "VALUES ('other', toStartOfMinute(now() - INTERVAL 15 MINUTE), '/elsewhere', 1000, 10)")

    error_cols = "event_id, project, timestamp, received_at, session_id, user_id, release, exception_type, message, " \
                 "group_id, title, culprit, noise"
    errors = [  # (project, minutes ago, user, group, noise)
        *(("demo", 30 + i, f"u{i % 3}", "g-checkout", "") for i in range(5)),
        ("demo", 60 * 24 * 3, "u9", "g-checkout", ""),  # three days ago: outside the range, in the total
        ("demo", 40, "u1", "g-home", ""), ("demo", 41, "u2", "g-home", ""),
        ("demo", 42, "u1", "g-noise", "browser-extension"),
        ("other", 43, "u7", "g-other", ""),
    ]
    rows = ", ".join(
        f"(generateUUIDv4(), '{p}', now64(3) - INTERVAL {m} MINUTE, now64(3), 's-{u}', '{u}', '1.1.0', 'TypeError', "
        f"'boom', '{g}', 'TypeError: {g}', 'app.js in {g}', '{n}')" for p, m, u, g, n in errors)
    stmts.append(f"INSERT INTO errors ({error_cols}) VALUES {rows}")
    stmts.append("INSERT INTO issue_state (project, group_id, status, status_since, first_seen, last_seen, events, "
                 "version, updated_at) VALUES ('demo', 'g-checkout', 'regressed', now64(3), now64(3) - INTERVAL 3 DAY, "
                 "now64(3), 6, 2, now64(3))")

    sessions = [("s1", "/checkout", 0, 120000), ("s2", "/", 1, 4000), ("s3", "/", 0, 60000), ("s4", "/checkout", 0, 30000)]
    stmts.append("INSERT INTO sessions (project, session_id, start, end, duration_ms, pageviews, entry_page, exit_page, "
                 "bounce) VALUES " + ", ".join(
                     f"('demo', '{s}', now64(3) - INTERVAL {50 + i} MINUTE, now64(3) - INTERVAL {40 + i} MINUTE, {d}, "
                     f"{1 if b else 3}, '{page}', '{page}', {b})" for i, (s, page, b, d) in enumerate(sessions)))
    stmts.append("INSERT INTO sessions (project, session_id, start, end, duration_ms, pageviews, entry_page, bounce) "
                 "VALUES ('other', 's9', now64(3) - INTERVAL 30 MINUTE, now64(3), 1000, 1, '/', 1), "
                 "('demo', 's-old', now64(3) - INTERVAL 2 DAY, now64(3) - INTERVAL 2 DAY, 1000, 1, '/', 1)")
    stmts.append("INSERT INTO page_views (project, session_id, session_start, page, start, end, visible_ms) VALUES "
                 + ", ".join(f"('demo', 's{i}', now64(3) - INTERVAL 50 MINUTE, '{page}', "
                             f"now64(3) - INTERVAL {45 - i} MINUTE, now64(3) - INTERVAL {44 - i} MINUTE, 30000)"
                             for i, page in enumerate(["/checkout", "/checkout", "/checkout", "/", "/"])))
    stmts.append("INSERT INTO rage_clicks (project, session_id, session_start, page, selector, first_click, detected_at, "
                 "clicks) VALUES ('demo', 's1', now64(3) - INTERVAL 50 MINUTE, '/checkout', '#pay', "
                 "now64(3) - INTERVAL 44 MINUTE, now64(3) - INTERVAL 44 MINUTE, 4), ('demo', 's4', "
                 "now64(3) - INTERVAL 47 MINUTE, '/checkout', '#pay', now64(3) - INTERVAL 43 MINUTE, "
                 "now64(3) - INTERVAL 43 MINUTE, 5)")
    stmts.append("INSERT INTO dead_clicks (project, session_id, session_start, event_id, timestamp, page, selector, kind) "
                 "VALUES ('demo', 's3', now64(3) - INTERVAL 52 MINUTE, 'e1', now64(3) - INTERVAL 41 MINUTE, '/', "
                 "'.banner', 'no-effect')")

    alerts = [  # (fingerprint, project, status, minutes ago, ends_at minutes from now or None, severity)
        ("f-active", "demo", "firing", 10, None, "critical"),
        ("f-resolved", "demo", "firing", 50, None, "warning"), ("f-resolved", "demo", "resolved", 20, None, "warning"),
        ("f-expired", "demo", "firing", 30, -5, "warning"),
        ("f-other", "other", "firing", 10, None, "critical"),
    ]
    stmts.append("INSERT INTO alerts (event_id, fingerprint, rule, status, severity, project, labels, starts_at, ends_at, "
                 "at, value, threshold, summary) VALUES " + ", ".join(
                     f"(generateUUIDv4(), '{f}', 'error-rate', '{st}', '{sev}', '{p}', map('page', '/checkout'), "
                     f"now64(3) - INTERVAL {m} MINUTE, "
                     f"{'NULL' if e is None else f'now64(3) + INTERVAL {e} MINUTE'}, now64(3) - INTERVAL {m} MINUTE, "
                     f"0.2, 0.05, 'errors per page view above 5 %')" for f, p, st, m, e, sev in alerts))
    return stmts


# ------------------------------------------------------------------------------- the test

def clickhouse_queries() -> dict[str, tuple[str, dict[str, Any], str]]:
    """key -> (dashboard file, panel or variable, raw SQL) for every ClickHouse query."""
    out = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for var in board.get("templating", {}).get("list", []):
            if var.get("datasource", {}).get("type") == CH_TYPE:
                out[f"{path.name}: ${var['name']}"] = (path.name, {"title": f"${var['name']}", "type": "variable"},
                                                       var["query"])
        panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
        for panel in panels:
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == CH_TYPE:
                    out[f"{path.name}: {panel['title']} [{target['refId']}]"] = (path.name, panel, target["rawSql"])
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    queries = clickhouse_queries()
    assert len(queries) >= 10
    now = int(time.time())
    frm, to = now - RANGE_S, now + 60
    job: dict[str, Any] = {"fixtures": fixtures(), "queries": {}}
    for key, (_, _, sql) in queries.items():
        job["queries"][f"{key} / demo"] = expand(sql, {"project": ["demo"]}, frm, to)
        job["queries"][f"{key} / All"] = expand(sql, {"project": None}, frm, to)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path_factory.mktemp("grafana-sql") / "chdb")],
                          input=json.dumps(job), capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, answer in out.items():
        answer["sql"] = job["queries"][key]
    return out


def by_title(answers: dict[str, dict[str, Any]], title: str, variant: str = "demo") -> dict[str, Any]:
    found = [a for key, a in answers.items() if key.split(": ", 1)[1].startswith(f"{title} [") and key.endswith(variant)]
    assert len(found) == 1, f"no single panel titled {title!r}"
    return found[0]


def records(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]


def test_every_clickhouse_query_runs_and_returns_rows(answers: dict[str, dict[str, Any]]) -> None:
    queries = clickhouse_queries()
    for key, answer in answers.items():
        assert "error" not in answer, f"{key}:\n{answer.get('error')}\n{answer['sql']}"
        assert answer["rows"], f"{key}: no rows from the test data\n{answer['sql']}"
        # the plugin turns these into JSON blobs, not strings, numbers or times: convert in the SQL
        opaque = [t for t in answer["types"] if t.startswith(("SimpleAggregateFunction", "AggregateFunction", "Tuple"))]
        assert not opaque, f"{key}: columns of type {opaque}"
        panel = queries[key.rsplit(" / ", 1)[0]][1]
        if panel["type"] == "timeseries":
            assert answer["columns"][0] == "time" and answer["types"][0].startswith("DateTime"), \
                f"{key}: a time series starts with a DateTime column named time, got {answer['columns']} {answer['types']}"
            numeric = [t for t in answer["types"][1:] if re.search(r"Int|Float|Decimal", t)]
            assert numeric, f"{key}: no value column"


def test_project_variable_lists_the_projects(answers: dict[str, dict[str, Any]]) -> None:
    values = [a for key, a in answers.items() if key.endswith("$project / demo")]
    assert len(values) == 1 and sorted(r[0] for r in values[0]["rows"]) == ["demo", "other"]


def test_overview_numbers_follow_the_project_filter(answers: dict[str, dict[str, Any]]) -> None:
    assert by_title(answers, "Errors")["rows"] == [[3 * 4]]  # 2 pages x 2 minutes x 3 errors
    assert by_title(answers, "Errors", "All")["rows"] == [[3 * 4 + 1000]]
    assert by_title(answers, "Sessions")["rows"] == [[4]]  # not the other project's, not the one 2 days ago
    assert by_title(answers, "Sessions", "All")["rows"] == [[5]]
    assert by_title(answers, "Bounce rate")["rows"] == [[0.25]]
    assert by_title(answers, "Alerts firing")["rows"] == [[1]]
    assert by_title(answers, "Alerts firing", "All")["rows"] == [[2]]


def test_web_vitals_p75_and_ratings_match_the_rollup_code(answers: dict[str, dict[str, Any]]) -> None:
    rows = {r["page"]: r for r in records(by_title(answers, "p75 LCP, INP and CLS by page"))}
    assert set(rows) == set(VITALS)
    expected = expected_vitals()
    for page, vitals in expected.items():
        for name, (q, rated) in vitals.items():
            value_col = f"{name}_p75_ms" if name != "cls" else "cls_p75"
            got = rows[page][value_col]
            if q is None:
                assert got is None and rows[page][f"{name}_rating"] == "", (page, name, rows[page])
            else:
                assert got == pytest.approx(q, rel=0.001, abs=0.001 if name == "cls" else 0.5), (page, name)
                assert rows[page][f"{name}_rating"] == rated, (page, name, q)
    # the data covers all three ratings, so a threshold off by a band would show
    assert {r for vitals in expected.values() for _, r in vitals.values()} >= {"good", "needs improvement", "poor"}


def test_top_issues_count_events_in_the_range(answers: dict[str, dict[str, Any]]) -> None:
    rows = records(by_title(answers, "Top issues"))
    assert [r["fingerprint"] for r in rows] == ["g-checkout", "g-home"]  # no noise, no other project
    top = rows[0]
    assert (top["events_in_range"], top["events_total"], top["users_in_range"], top["status"]) == (5, 6, 3, "regressed")
    assert rows[1]["status"] == "new"


def test_rage_and_dead_clicks_by_page(answers: dict[str, dict[str, Any]]) -> None:
    rows = {r["page"]: r for r in records(by_title(answers, "Rage and dead clicks by page"))}
    assert (rows["/checkout"]["page_views"], rows["/checkout"]["rage_click_bursts"], rows["/checkout"]["dead_click_count"]) \
        == (3, 2, 0)
    assert (rows["/"]["page_views"], rows["/"]["rage_click_bursts"], rows["/"]["dead_click_count"]) == (2, 0, 1)
    elements = records(by_title(answers, "Rage clicks by element"))
    assert [(r["page"], r["selector"], r["bursts"], r["clicks_in_bursts"]) for r in elements] == [("/checkout", "#pay", 2, 9)]


def test_firing_alerts_are_the_latest_firing_events(answers: dict[str, dict[str, Any]]) -> None:
    rows = records(by_title(answers, "Firing alerts"))
    assert [(r["fingerprint"], r["severity"], r["rule"], r["labels"]) for r in rows] == \
        [("f-active", "critical", "error-rate", "page=/checkout")]
    everyone = records(by_title(answers, "Firing alerts", "All"))
    assert sorted(r["fingerprint"] for r in everyone) == ["f-active", "f-other"]
