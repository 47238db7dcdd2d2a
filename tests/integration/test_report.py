"""The health report's queries on real chDB, against a small dataset whose answer is known.

A child process (chDB opens one data directory per process, and this pytest process may host other
tests that hold theirs) migrates a fresh database and loads it the way the pipeline would: raw
events through the worker's own ingest step (``process_batch``: raw rows, error grouping and minute
rollups, with ClickHouse filling the hourly merge), issue rows from the real issue lifecycle, and
sessions, rage/dead clicks and alert events as the worker writes them. It then builds reports with
``build_report`` and prints them; the test checks exact figures, then runs ``pulse report --json``
on the same directory (after the child has exited) and expects the same document.

No Kafka and no pipeline processes: only ClickHouse is real here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from tests.conftest import free_port, make_settings, settings_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
H = 3600

LOAD_AND_REPORT = textwrap.dedent('''
    import asyncio, json, sys, uuid
    from datetime import datetime, timedelta, timezone

    import orjson

    from pipeline.ingest.dedup import RecentIds
    from pipeline.ingest.process import RawMessage, process_batch
    from pipeline.issues import Command, IssueRules, Occurrence, OccurrenceRecord, apply_command, apply_occurrences
    from pipeline.issues import state_row, transition_row
    from pipeline.report.build import build_report
    from pipeline.rollups.minute import RollupRules
    from pipeline.settings import Settings
    from pipeline.storage.clickhouse import connect
    from pipeline.storage.migrations import migrate

    N = int(sys.argv[1])  # "now" of the report, epoch seconds
    NOW = datetime.fromtimestamp(N, timezone.utc)
    H = 3600
    INSERT = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1}
    settings = Settings()
    client = connect(settings.clickhouse)
    migrate(client, settings)

    def insert(table, rows):
        body = b"\\n".join(orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in rows)
        client.raw_insert(table, None, insert_block=body, fmt="JSONEachRow", settings=INSERT)

    def at(seconds_ago):
        return datetime.fromtimestamp(N - seconds_ago, timezone.utc)

    # ---------------------------------------------------------------- raw events -> rows and rollups
    events = []

    def ev(type_, when, page, project="shop", user=None, **payload):
        events.append({"event_id": str(uuid.uuid4()), "type": type_, "project": project,
                       "timestamp": when.isoformat(), "session_id": f"{project}-s", "user_id": user,
                       "url": f"https://{project}.example{page}", type_: payload})

    T = at(6 * H).replace(second=0)   # current period: minutes T .. T+3
    P = at(30 * H).replace(second=0)  # previous period
    sec = lambda base, s: base + timedelta(seconds=s)
    for i in range(20):
        ev("action", sec(T, i), "/product", kind="pageview")
        ev("action", sec(T, 20 + i), "/", kind="pageview")
    for user, (etype, msg) in [("u1", ("TypeError", "cart is undefined")), ("u2", ("TypeError", "cart is undefined")),
                               ("u1", ("TypeError", "cart is undefined")), ("u3", ("RangeError", "bad length")),
                               (None, ("ReferenceError", "foo is not defined")),
                               ("u4", ("Error", "ResizeObserver loop limit exceeded"))]:  # the last one is noise
        ev("error", sec(T, 45), "/product", user=user, exception_type=etype, message=msg)
    for i in range(8):
        ev("vital", sec(T, 50), "/product", name="LCP", value=9000.0)
        ev("vital", sec(T, 50), "/", name="LCP", value=1000.0)
    for i in range(10):
        ev("vital", sec(T, 51), "/", name="INP", value=150.0)
        ev("vital", sec(T, 51), "/", name="CLS", value=0.05)
    for i in range(10):  # three minutes with API calls: all fine, 1 of 10 failed, 1 of 10 checkouts failed
        ev("api", sec(T, 60 + i), "/cart", url="https://shop.example/api/cart", status=200, duration_ms=80.0)
        ev("api", sec(T, 120 + i), "/cart", url="https://shop.example/api/cart", status=500 if i == 0 else 200,
           duration_ms=90.0)
        ev("api", sec(T, 180 + i), "/checkout", url="https://shop.example/api/checkout",
           status=500 if i == 0 else 200, duration_ms=300.0)
    # another project, same period: never in shop's figures
    for i in range(10):
        ev("action", sec(T, i), "/", project="blog", kind="pageview")
    for i in range(2):
        ev("error", sec(T, 30), "/", project="blog", user="b1", exception_type="TypeError", message="post is null")
    # previous period: 20 page views, 1 error, good vitals, every API call fine
    for i in range(20):
        ev("action", sec(P, i), "/", kind="pageview")
    ev("error", sec(P, 30), "/", user="u1", exception_type="TypeError", message="cart is undefined")
    for i in range(10):
        ev("vital", sec(P, 40), "/", name="LCP", value=2000.0)
        ev("vital", sec(P, 41), "/", name="INP", value=150.0)
        ev("api", sec(P, 60 + i), "/cart", url="https://shop.example/api/cart", status=200, duration_ms=50.0)
    for i in range(5):
        ev("api", sec(P, 70 + i), "/checkout", url="https://shop.example/api/checkout", status=201, duration_ms=200.0)

    messages = [RawMessage("raw", 0, n, None, orjson.dumps(events[n:n + 25]), N * 1000)
                for n in range(0, len(events), 25)]
    out = process_batch(messages, RecentIds(10_000), 1, NOW, rollups=RollupRules())
    assert not out.dead_letters, [d.reason for d in out.dead_letters]
    for msg in out.storage:
        client.raw_insert(msg.table, None, insert_block=msg.value, fmt="JSONEachRow", settings=INSERT)

    # ---------------------------------------------------------------- issues, through the real lifecycle
    rules = IssueRules()
    offset = iter(range(10_000))

    def occur(state, group, *times_ago):
        rec = OccurrenceRecord("shop", group, f"Error {group}", "app.js", "raw", 0, next(offset),
                               tuple(Occurrence(str(uuid.uuid4()), (N - t) * 1000) for t in times_ago))
        return apply_occurrences(state, rec, rules)

    transitions, states = [], []
    a, ts = occur(None, "issue-a", 30 * H)                       # new 30 h ago ...
    transitions += ts
    a, ts = apply_command(a, Command("c-a", "resolve", "shop", "issue-a", (N - 10 * H) * 1000), rules)
    transitions += ts                                             # ... resolved 10 h ago: 72000 s
    b, ts = occur(None, "issue-b", 5 * H)
    transitions += ts
    b, ts = apply_command(b, Command("c-b", "resolve", "shop", "issue-b", (N - 3 * H) * 1000), rules)
    transitions += ts                                             # 7200 s
    c, ts = occur(None, "issue-c", 40 * H)                       # one error an hour for a baseline ...
    transitions += ts
    for h in range(39, 13, -1):
        c, ts = occur(c, "issue-c", h * H)
        transitions += ts
    burst = N - ((N - 12 * H) // H * H + 60)  # a minute into the hour that began 12 to 13 h ago
    c, ts = occur(c, "issue-c", *[burst - k for k in range(25)])  # ... 25 in one hour: escalating ...
    transitions += ts
    assert c.status == "escalating", c.status
    c, ts = occur(c, "issue-c", 9 * H)                            # ... a quiet hour later: ongoing by itself
    transitions += ts
    assert c.status == "ongoing", c.status
    insert("issue_transitions", [transition_row(t) for t in transitions])
    insert("issue_state", [state_row(s, N * 1000) for s in (a, b, c)])

    # ---------------------------------------------------------------- sessions, rage and dead clicks
    def session(project, sid, ago, duration_ms, pageviews, bounce):
        start = at(ago)
        return {"project": project, "session_id": sid, "user_id": "", "start": start,
                "end": start + timedelta(milliseconds=duration_ms), "duration_ms": duration_ms,
                "pageviews": pageviews, "clicks": 0, "rage_clicks": 0, "dead_clicks": 0, "errors": 0, "max_scroll": 0,
                "forms_started": 0, "forms_submitted": 0, "forms_abandoned": 0, "entry_page": "/", "exit_page": "/",
                "bounce": bounce, "release": "", "browser": "Chrome", "browser_version": "120", "os": "Linux",
                "device": "Other", "user_agent": ""}

    insert("sessions", [session("shop", "s1", 6 * H, 5000, 1, True), session("shop", "s2", 6 * H, 8000, 1, True),
                        session("shop", "s3", 5 * H, 120000, 3, False), session("shop", "s4", 4 * H, 307000, 5, False),
                        session("shop", "p1", 30 * H, 60000, 2, False), session("shop", "p2", 29 * H, 30000, 2, False),
                        session("blog", "b1", 5 * H, 2000, 1, True)])
    insert("sessions", [session("shop", "s1", 6 * H, 5000, 1, True)])  # a replayed row: FINAL collapses it

    def rage(sid, ago, page, selector):
        return {"project": "shop", "session_id": sid, "session_start": at(ago + 60), "page": page,
                "selector": selector, "first_click": at(ago), "detected_at": at(ago - 1), "clicks": 3}

    insert("rage_clicks", [rage("s3", 5 * H, "/checkout", "#pay"), rage("s4", 4 * H, "/checkout", "#pay"),
                           rage("s4", 4 * H - 100, "/product", "#zoom"), rage("p1", 30 * H, "/checkout", "#pay")])
    insert("dead_clicks", [{"project": "shop", "session_id": "s3", "session_start": at(5 * H + 60),
                            "event_id": str(uuid.uuid4()), "timestamp": at(5 * H), "page": "/",
                            "selector": ".hero-img", "kind": "non_interactive"}])

    # ---------------------------------------------------------------- alert events
    alerts = []

    def alert(rule, severity, status, starts_ago, at_ago, ends_ago=None, project="shop", level=None, kind="ratio",
              summary=""):
        fp = f"{project}-{rule}-{severity}"
        annotations = {"kind": kind, **({"level": level} if level else {})}
        alerts.append({"event_id": str(uuid.uuid4()), "fingerprint": fp, "rule": rule, "status": status,
                       "severity": severity, "project": project,
                       "labels": {"project": project, "severity": severity}, "starts_at": at(starts_ago),
                       "ends_at": None if ends_ago is None else at(ends_ago), "at": at(at_ago), "value": 0.2,
                       "threshold": 0.1, "summary": summary or f"{rule} in {project}", "runbook_url": "",
                       "annotations": json.dumps(annotations)})

    alert("error-rate", "critical", "firing", 6 * H, 6 * H - 60, level="critical")
    alert("error-rate", "critical", "resolved", 6 * H, 5 * H, 5 * H, level="critical")            # 3600 s
    alert("api-latency", "warning", "firing", 4 * H, 4 * H - 300, level="warning")
    alert("api-latency", "warning", "resolved", 4 * H, 3 * H + 1800, 3 * H + 1800, level="warning")  # 1800 s
    alert("checkout-failure-rate", "critical", "firing", 2 * H, 2 * H - 300, level="critical",
          summary="shop (production): 10.0% of checkout calls failed over 5m (> 10%)")  # still firing
    alert("new-issue", "warning", "firing", 5 * H, 5 * H, level="warning", kind="issue")  # a moment, not an incident
    alert("rage-click-spike", "warning", "firing", 1 * H, 1 * H - 300, level="warning")  # still firing
    alert("api-availability", "page", "firing", 7 * H, 7 * H, kind="slo")  # an SLO page: counts as critical
    alert("api-availability", "page", "resolved", 7 * H, 6 * H + 1800, 6 * H + 1800, kind="slo")  # 1800 s
    alert("lcp-poor", "warning", "firing", 26 * H, 26 * H, level="warning")  # firing across the periods' border
    alert("lcp-poor", "warning", "resolved", 26 * H, 20 * H, 20 * H, level="warning")  # 21600 s
    alert("error-rate", "warning", "firing", 30 * H, 30 * H - 60, level="warning")  # previous period only
    alert("error-rate", "warning", "resolved", 30 * H, 30 * H - 600, 30 * H - 600, level="warning")
    alert("error-rate", "critical", "firing", 2 * H, 2 * H, project="blog", level="critical")
    insert("alerts", alerts)
    insert("alerts", alerts[:2])  # replayed events: FINAL collapses them
    client.close()

    async def reports():
        return {"shop": await build_report(settings, 86400, "shop", NOW, True),
                "all": await build_report(settings, 86400, None, NOW, True),
                "shop_7d": await build_report(settings, 7 * 86400, "shop", NOW, True)}

    print(json.dumps(asyncio.run(reports())))
''')


def _rules_with_remediation(tmp_path: Path) -> Path:
    text = (ROOT / "pipeline" / "alerts" / "default_rules.yaml").read_text()
    anchor = "  - name: api-latency\n"
    assert anchor in text
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(anchor, anchor + "    remediation_webhook: https://ops.example/hooks/scale-out\n"))
    return path


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {**settings_env(settings), "PULSE_REPORT_AVERAGE_ORDER_VALUE": "50",
            "PULSE_ALERTS_RULES_PATH": str(_rules_with_remediation(tmp_path)), "PATH": os.environ.get("PATH", ""),
            "COLUMNS": "200"}


def _pulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "report", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)


def _without_clock(doc: dict[str, Any]) -> dict[str, Any]:
    body = dict(doc["monitoring_health_check"])
    body.pop("generated_at")
    body.pop("period")
    return body


def test_report_figures_on_a_known_dataset(tmp_path: Path) -> None:
    # no broker needed: nothing here talks to Kafka; the sink port is free, so queries open chDB directly
    settings = make_settings("127.0.0.1:1", tmp_path, PULSE_SINK_PORT=str(free_port()))
    env = _env(settings, tmp_path)
    now = int(datetime.now(timezone.utc).timestamp())
    child = subprocess.run([sys.executable, "-c", LOAD_AND_REPORT, str(now)], capture_output=True, text=True,
                           timeout=180, env=env, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-4000:]
    reports = json.loads(child.stdout.strip().splitlines()[-1])
    r = reports["shop"]["monitoring_health_check"]

    assert r["project"] == "shop" and r["period"]["length"] == "24h"
    assert r["period"]["end"] == datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    # errors: 5 (the ResizeObserver one is noise) per 40 page views; 3 issues; users u1, u2, u3
    assert r["errors"] == {"total_24h": 5, "error_rate": 0.125, "unique_errors": 3, "affected_users": 3,
                           "auto_resolved": 1, "p95_resolution_time": 68760.0}  # p95 of 7200 s and 72000 s

    perf = r["performance"]
    assert perf["lcp"]["rating"] == "poor" and perf["lcp"]["score"] == 0.0
    assert perf["lcp"]["p75"] == pytest.approx(9000, rel=0.01) and perf["lcp"]["p50"] == pytest.approx(1000, rel=0.01)
    assert perf["inp"]["rating"] == "good" and perf["inp"]["p75"] == pytest.approx(150, rel=0.01)
    assert perf["cls"]["rating"] == "good" and perf["cls"]["p75"] == pytest.approx(0.05, rel=0.01)
    for vital in ("fcp", "ttfb", "fid"):  # no samples: null, not 0 or 100
        assert perf[vital] == {"p50": None, "p75": None, "p95": None, "rating": None, "score": None}
    assert perf["score"] == pytest.approx(66.7)  # (0 * .25 + 100 * .25 + 100 * .25) / .75

    assert r["user_experience"] == {"rage_clicks": 3, "dead_clicks": 1, "avg_session_duration": 110.0,
                                    "bounce_rate": 0.5, "pages_per_session": 2.5, "sessions": 4}
    assert r["alerts"] == {"total": 6, "critical": 3, "warnings": 3, "info": 0, "auto_remediated": 1,
                           "mttr": 7200.0}  # (3600 + 1800 + 1800 + 21600) / 4
    assert r["business"] == {"checkout_success_rate": 0.9, "api_success_rate": 0.9333, "revenue_impact": 50.0,
                             "uptime": 0.3333}
    assert [(i["rule"], i["severity"]) for i in r["active_incidents"]] == [
        ("checkout-failure-rate", "critical"), ("rage-click-spike", "warning")]
    assert r["active_incidents"][0]["summary"].startswith("shop (production): 10.0% of checkout calls failed")
    assert r["active_incidents"][0]["starts_at"] == datetime.fromtimestamp(now - 2 * H, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")

    # components: errors 0, performance 66.7, ux (83.3 + 0) / 2, alerts 100 - 3*10 - 3*3 - 25 - 10 = 26,
    # business (33.3 + 50 + 0) / 3; health = .3*0 + .25*66.67 + .15*41.67 + .15*26 + .15*27.78 = 31.0
    assert {k: c["score"] for k, c in r["health_components"].items()} == {
        "errors": 0.0, "performance": 66.7, "user_experience": 41.7, "alerts": 26.0, "business": 27.8}
    assert r["health_score"] == 31.0 and r["health_status"] == "unhealthy"

    # previous period: 1 error / 20 page views (errors 50), vitals 100, ux (100 + 0) / 2, alerts
    # 100 - 2*3 - 10 (lcp-poor was firing at its end) = 84, business 100 -> 75.1
    t = r["trend"]
    assert t["health_score"] == {"current": 31.0, "previous": 75.1, "change": -44.1, "direction": "down"}
    assert t["error_rate"] == {"current": 0.125, "previous": 0.05, "change": 0.075, "direction": "up"}
    assert t["lcp_p75"]["direction"] == "up" and t["lcp_p75"]["previous"] == pytest.approx(2000, rel=0.01)
    assert t["inp_p75"]["direction"] == "flat" and t["inp_p75"]["change"] == 0
    assert t["api_success_rate"]["previous"] == 1.0 and t["api_success_rate"]["direction"] == "down"
    assert t["checkout_success_rate"] == {"current": 0.9, "previous": 1.0, "change": -0.1, "direction": "down"}
    assert t["bounce_rate"] == {"current": 0.5, "previous": 0.0, "change": 0.5, "direction": "up"}
    assert t["rage_clicks"] == {"current": 3, "previous": 1, "change": 2, "direction": "up"}

    recs = r["recommendations"]
    assert [x["priority"] for x in recs] == sorted((x["priority"] for x in recs), key=("high", "medium", "low").index)
    by_area = {(x["priority"], x["area"]): x["message"] for x in recs}
    assert "checkout-failure-rate" in by_area[("high", "alerts")]
    assert "12.5%" in by_area[("high", "errors")] and "cart is undefined" in by_area[("high", "errors")]
    assert "LCP" in by_area[("high", "performance")] and "/product" in by_area[("high", "performance")]
    assert "rage-click-spike" in by_area[("medium", "alerts")]
    assert "#pay at /checkout (2)" in by_area[("medium", "user_experience")]
    assert ".hero-img" in by_area[("low", "user_experience")]
    assert any("Checkout success is 90.0%" in x["message"] and "50.00" in x["message"] for x in recs)

    # every project: blog's 10 page views and 2 errors, and its firing alert
    everything = reports["all"]["monitoring_health_check"]
    assert everything["project"] is None
    assert everything["errors"]["total_24h"] == 7 and everything["errors"]["error_rate"] == 0.14
    assert everything["errors"]["affected_users"] == 4 and everything["user_experience"]["sessions"] == 5
    assert everything["alerts"]["total"] == 7 and len(everything["active_incidents"]) == 3

    # 7 days read the hourly merge: both 24 h periods' data; the week before is empty (null, not 0)
    week = reports["shop_7d"]["monitoring_health_check"]
    assert week["period"]["length"] == "7d"
    assert week["errors"]["total_24h"] == 6 and week["errors"]["error_rate"] == 0.1
    assert week["trend"]["error_rate"] == {"current": 0.1, "previous": None, "change": None, "direction": None}
    assert week["trend"]["health_score"]["previous"] is None

    # the CLI on the same directory (the child has exited, so it is free): the same document
    cli = _pulse(env, "--json", "--project", "shop")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert _without_clock(json.loads(cli.stdout)) == _without_clock(reports["shop"])

    table = _pulse(env, "--project", "shop")
    assert table.returncode == 0, table.stderr[-3000:]
    for text in ("Health 31.0/100 (unhealthy)", "Web vitals", "Recommendations", "checkout-failure-rate"):
        assert text in table.stdout, table.stdout

    bad = _pulse(env, "--period", "5x")
    assert bad.returncode == 1 and "period must be a whole number of hours, days or weeks" in bad.stderr
