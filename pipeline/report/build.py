"""Run the health report's queries and turn their rows into the report.

    report = await build_report(settings, 86_400, "shop", datetime.now(timezone.utc), allow_direct=True)

Queries go through ``pipeline.api.common.query_rows`` (so a failure is an ``ApiError`` with
ClickHouse's text, 503 when the embedded database is only reachable through a sink that does not
run). They run one after the other: on embedded chDB each opens the directory (or asks the sink)
and concurrency would gain nothing. Each query covers the period and the previous one at once.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.api.common import query_rows
from pipeline.report import queries as q
from pipeline.report.health import VITALS, figures_template, health_report, iso
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PERIODS = ("current", "previous")


def remediated_rules(settings: Settings) -> set[str]:
    """Rules whose firing calls a remediation webhook: ``remediation_webhook`` in the alert rule
    file (``PULSE_ALERTS_RULES_PATH``), or the notifier config's ``remediation`` map
    (``PULSE_NOTIFIER_CONFIG_PATH``). The ``alerts`` table does not keep the
    webhook, so this is read from the configuration in force now. A file that cannot be read
    contributes nothing (the report still answers; the worker and notifier refuse such a file)."""
    names: set[str] = set()
    try:
        from pipeline.alerts.rules import load_rules

        rules = load_rules(settings.alerts.rules_path)
        names |= {r.name for r in (*rules.rules, *rules.slos) if getattr(r, "remediation_webhook", None)}
    except Exception as exc:  # noqa: BLE001 - RuleFileError, OSError: report without it
        log.warning("health report: alert rules not read (%s); auto_remediated counts the notifier's map only", exc)
    try:  # only the rule names of its `remediation` map (no ${VAR} expansion needed for those)
        import yaml

        doc = yaml.safe_load(settings.notifier.config_path.read_text(encoding="utf-8")) or {}
        remediation = doc.get("remediation") if isinstance(doc, dict) else None
        if isinstance(remediation, dict):
            names |= {str(k) for k in remediation}
    except Exception as exc:  # noqa: BLE001 - OSError, YAMLError
        log.warning("health report: notifier config %s not read (%s)", settings.notifier.config_path, exc)
    return names


def _num(value: Any) -> float | None:
    """A number from a JSON row; NaN / null -> None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int:
    return int(value or 0)


def _by_period(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["period"]: r for r in rows}


async def collect_figures(settings: Settings, window: q.Window, allow_direct: bool
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(current, previous) figures, in the shape of ``health.figures_template()``."""
    figs = {p: figures_template() for p in PERIODS}
    cur = figs["current"]

    async def rows(sql: str) -> list[dict[str, Any]]:
        return await query_rows(settings, sql, allow_direct)

    for period, r in _by_period(await rows(q.rollup_totals(window))).items():
        ro = figs[period]["rollups"]
        ro.update(rows=_int(r["rollup_rows"]), errors=_int(r["total_errors"]), pageviews=_int(r["total_pageviews"]),
                  api_calls=_int(r["total_api_calls"]), api_failures=_int(r["total_api_failures"]),
                  checkout_calls=_int(r["total_checkout_calls"]), checkout_failures=_int(r["total_checkout_failures"]))
        for v in VITALS:
            ro["vitals"][v] = {"samples": _int(r[f"{v}_samples"]), "p50": _num(r[f"{v}_p50"]),
                               "p75": _num(r[f"{v}_p75"]), "p95": _num(r[f"{v}_p95"])}

    worst = (await rows(q.worst_pages(window)) or [{}])[0]
    for v in VITALS:
        if _int(worst.get(f"{v}_pages")) and _num(worst.get(f"{v}_page_p75")) is not None:
            cur["worst_pages"][v] = {"page": worst[f"{v}_page"], "p75": _num(worst[f"{v}_page_p75"]),
                                     "samples": _int(worst[f"{v}_page_samples"])}

    for period, r in _by_period(await rows(q.uptime(window, settings.report.uptime_min_success))).items():
        figs[period]["uptime"] = {"api_minutes": _int(r["api_minutes"]), "up_minutes": _int(r["up_minutes"])}

    for period, r in _by_period(await rows(q.error_figures(window))).items():
        figs[period]["errors"] = {"raw_errors": _int(r["raw_errors"]), "unique_errors": _int(r["unique_errors"]),
                                  "affected_users": _int(r["affected_users"])}
    top = await rows(q.top_issue(window))
    if top:
        cur["top_issue"] = {"fingerprint": top[0]["fingerprint"], "title": top[0]["title"],
                            "culprit": top[0]["culprit"], "events": _int(top[0]["events"])}

    for period, r in _by_period(await rows(q.resolution_times(window))).items():
        figs[period]["issues"].update(resolved=_int(r["resolved"]), p95_resolution_time=_num(r["p95_seconds"]))
    for period, r in _by_period(await rows(q.auto_resolved(window))).items():
        figs[period]["issues"]["auto_resolved"] = _int(r["auto_resolved"])

    for r in await rows(q.user_experience(window)):
        ux = figs[r["period"]]["ux"]
        if r["source"] == "sessions":
            ux.update(sessions=_int(r["n"]), avg_session_duration=_num(r["avg_duration_s"]),
                      bounce_rate=_num(r["bounce_rate"]), pages_per_session=_num(r["pages_per_session"]))
        else:
            ux[r["source"]] = _int(r["n"])
    for r in await rows(q.top_clicks(window)):
        cur["top_clicks"][r["source"]] = {"page": r["page"], "selector": r["selector"], "n": _int(r["n"])}

    for period, r in _by_period(await rows(q.alert_summary(window, remediated_rules(settings)))).items():
        figs[period]["alerts"] = {"fired": _int(r["fired"]), "critical": _int(r["critical"]),
                                  "warnings": _int(r["warnings"]), "info": _int(r["info"]),
                                  "resolved": _int(r["resolved"]), "auto_remediated": _int(r["auto_remediated"]),
                                  "mttr": _num(r["mttr_seconds"])}
    for r in await rows(q.active_incidents(window)):
        incident = {"fingerprint": r["fingerprint"], "rule": r["alert_rule"], "severity": r["alert_severity"],
                    "level": r["alert_level"], "summary": r["last_summary"],
                    "starts_at": iso(datetime.fromtimestamp(_int(r["starts_at_ms"]) / 1000, timezone.utc)),
                    "value": _num(r["last_value"]), "threshold": _num(r["last_threshold"])}
        if r["firing_now"]:
            cur["incidents"].append(incident)
        if r["firing_before"]:
            figs["previous"]["incidents"].append(incident)
    return figs["current"], figs["previous"]


async def build_report(settings: Settings, period_s: int, project: str | None, now: datetime,
                       allow_direct: bool) -> dict[str, Any]:
    """The ``monitoring_health_check`` document for ``[now - period_s, now)`` and the period before it.

    ``allow_direct``: True from the CLI (it may open the embedded database when no sink runs),
    False from long-running processes (they only ever ask the sink)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    end = now.astimezone(timezone.utc).replace(microsecond=0)
    start = end - timedelta(seconds=period_s)
    window = q.Window(int(start.timestamp()), int(end.timestamp()), project or None)
    current, previous = await collect_figures(settings, window, allow_direct)
    return health_report(current, previous, start=start, end=end, project=project or None, generated_at=now,
                         average_order_value=settings.report.average_order_value)
