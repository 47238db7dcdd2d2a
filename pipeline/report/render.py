"""The health report as rich tables, for ``pulse report``. Pure formatting of the report dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

RATING_STYLE = {"good": "green", "needs-improvement": "yellow", "poor": "red"}
STATUS_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
PRIORITY_STYLE = {"high": "red", "medium": "yellow", "low": "cyan"}
LEVEL_STYLE = {"critical": "red", "warning": "yellow"}
# trend figures where a rise is good news (for the others a rise is bad news)
HIGHER_IS_BETTER = {"health_score", "api_success_rate", "checkout_success_rate"}
NONE = Text("-", style="dim")


def _pct(value: float | None, digits: int = 1) -> RenderableType:
    return NONE if value is None else f"{value * 100:.{digits}f} %"


def _num(value: Any, unit: str = "") -> RenderableType:
    if value is None:
        return NONE
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    else:
        text = f"{value:,}"
    return f"{text}{unit}"


def _seconds(value: float | None) -> RenderableType:
    if value is None:
        return NONE
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _vital(name: str, value: float | None) -> RenderableType:
    if value is None:
        return NONE
    return f"{value:.3f}" if name == "cls" else f"{value:,.0f} ms"


def _styled(value: str | None, styles: Mapping[str, str]) -> RenderableType:
    return NONE if value is None else Text(value, style=styles.get(value, ""))


def _score(value: float | None) -> RenderableType:
    if value is None:
        return NONE
    style = "green" if value >= 80 else "yellow" if value >= 50 else "red"
    return Text(f"{value:.1f}", style=style)


def summary(doc: Mapping[str, Any]) -> Text:
    r = doc["monitoring_health_check"]
    period = r["period"]
    text = Text()
    text.append("Health ")
    score = r["health_score"]
    text.append("no data" if score is None else f"{score:.1f}/100",
                style=STATUS_STYLE.get(r["health_status"] or "", "bold"))
    if r["health_status"]:
        text.append(f" ({r['health_status']})", style=STATUS_STYLE[r["health_status"]])
    text.append(f"   {r['project'] or 'all projects'}, last {period['length']} "
                f"({period['start']} .. {period['end']}), generated {r['generated_at']}")
    return text


def figures_table(r: Mapping[str, Any]) -> Table:
    e, ux, al, b = r["errors"], r["user_experience"], r["alerts"], r["business"]
    table = Table("area", "figure", "value", title="Figures")
    rows: list[tuple[str, str, RenderableType]] = [
        ("errors", "errors", _num(e["total_24h"])),
        ("", "error rate (per page view)", _pct(e["error_rate"], 2)),
        ("", "unique errors (issues)", _num(e["unique_errors"])),
        ("", "affected users", _num(e["affected_users"])),
        ("", "auto-resolved issues", _num(e["auto_resolved"])),
        ("", "p95 resolution time", _seconds(e["p95_resolution_time"])),
        ("user experience", "sessions", _num(ux["sessions"])),
        ("", "avg session duration", _seconds(ux["avg_session_duration"])),
        ("", "bounce rate", _pct(ux["bounce_rate"])),
        ("", "pages per session", _num(ux["pages_per_session"])),
        ("", "rage clicks", _num(ux["rage_clicks"])),
        ("", "dead clicks", _num(ux["dead_clicks"])),
        ("alerts", "fired (critical / warning / info)",
         "-" if al["total"] is None else f"{al['total']} ({al['critical']} / {al['warnings']} / {al['info']})"),
        ("", "auto-remediated", _num(al["auto_remediated"])),
        ("", "mean time to resolve", _seconds(al["mttr"])),
        ("business", "API success", _pct(b["api_success_rate"], 2)),
        ("", "checkout success", _pct(b["checkout_success_rate"], 2)),
        ("", "revenue impact", _num(b["revenue_impact"])),
        ("", "uptime", _pct(b["uptime"], 2)),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def performance_table(r: Mapping[str, Any]) -> Table:
    perf = r["performance"]
    table = Table("vital", "p50", "p75", "p95", "rating (p75)", "score",
                  title=Text.assemble("Web vitals, score ", _score(perf["score"]) if perf["score"] is not None
                                      else Text("-", style="dim")))
    for name in ("lcp", "inp", "cls", "fcp", "ttfb", "fid"):
        v = perf[name]
        table.add_row(name.upper(), _vital(name, v["p50"]), _vital(name, v["p75"]), _vital(name, v["p95"]),
                      _styled(v["rating"], RATING_STYLE), _score(v["score"]))
    return table


def components_table(r: Mapping[str, Any]) -> Table:
    table = Table("component", "score", "weight", "counted", title="Health score")
    for name, c in r.get("health_components", {}).items():
        table.add_row(name.replace("_", " "), _score(c["score"]), f"{c['weight']:.2f}",
                      f"{c['effective_weight'] * 100:.0f} %" if c["score"] is not None else NONE)
    return table


def trend_table(r: Mapping[str, Any]) -> Table:
    table = Table("figure", "current", "previous", "change", "", title=f"Trend (vs the previous {r['period']['length']})")
    arrows = {"up": "↑", "down": "↓", "flat": "→"}
    for name, t in r["trend"].items():
        direction = t["direction"]
        style = ""
        if direction in ("up", "down"):
            better = (direction == "up") == (name in HIGHER_IS_BETTER)
            style = "green" if better else "red"
        if name.endswith("_rate"):
            cells = [_pct(t["current"], 2), _pct(t["previous"], 2),
                     NONE if t["change"] is None else f"{t['change'] * 100:+.2f} pts"]
        elif name.endswith("_p75"):
            cells = [_vital(name, t["current"]), _vital(name, t["previous"]),
                     NONE if t["change"] is None else f"{t['change']:+,.0f} ms"]
        else:
            cells = [_num(t["current"]), _num(t["previous"]), NONE if t["change"] is None else f"{t['change']:+,}"]
        table.add_row(name.replace("_", " "), *cells,
                      NONE if direction is None else Text(f"{arrows[direction]} {direction}", style=style))
    return table


def incidents_table(r: Mapping[str, Any]) -> Table:
    table = Table("severity", "rule", "summary", "since", "value", "threshold", title="Active incidents")
    for i in r["active_incidents"]:
        table.add_row(_styled(i["severity"], LEVEL_STYLE), i["rule"], i["summary"][:80], i["starts_at"],
                      _num(i["value"]), _num(i["threshold"]))
    return table


def recommendations_table(r: Mapping[str, Any]) -> Table:
    table = Table("priority", "area", "recommendation", title="Recommendations")
    for rec in r["recommendations"]:
        table.add_row(_styled(rec["priority"], PRIORITY_STYLE), rec["area"].replace("_", " "), rec["message"])
    return table


def render_report(doc: Mapping[str, Any]) -> Group:
    """Everything, in reading order: summary, health components, figures, vitals, trend, incidents, advice."""
    r = doc["monitoring_health_check"]
    parts: list[RenderableType] = [summary(doc), components_table(r), figures_table(r), performance_table(r),
                                   trend_table(r)]
    if r["active_incidents"]:
        parts.append(incidents_table(r))
    if r["recommendations"]:
        parts.append(recommendations_table(r))
    else:
        parts.append(Text("No recommendations: nothing crossed a threshold.", style="green"))
    return Group(*parts)
