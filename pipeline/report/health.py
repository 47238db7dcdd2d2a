"""From the figures of a period (and of the one before it) to the health report. Pure: no I/O, no clock.

``build_report`` in ``pipeline/report/build.py`` fills one *figures* dict per period from the
queries (``figures_template()`` shows its shape) and calls ``health_report``. Everything here is
defined, with a worked example, in ``docs/report.md``; in short:

* a web vital is rated at its p75 against the product spec's thresholds (good <= g, poor > p) and
  scored by ``band_score``: 100 up to *good*, falling linearly to 50 at *poor* and to 0 at twice
  *poor*;
* five components (errors, performance, user experience, alerts, business) are each scored 0-100;
  ``health_score`` is their weighted mean over the components that have data (weights
  renormalised), rounded to one decimal; healthy >= 80, degraded >= 50, else unhealthy;
* a figure with no data is ``None`` (JSON null), never a made-up 0 or 100.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pipeline.rollups.minute import VITAL_THRESHOLDS

# ------------------------------------------------------------------------------------------ periods

MIN_PERIOD_S = 3600
MAX_PERIOD_S = 90 * 86_400
_PERIOD = re.compile(r"^\s*(\d{1,5})\s*([hdw])\s*$", re.IGNORECASE)
_UNIT_S = {"h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_period(text: str) -> int:
    """``24h``, ``7d``, ``2w`` -> seconds; ``ValueError`` with a message a person can act on."""
    m = _PERIOD.match(text or "")
    if not m:
        raise ValueError(f"period must be a whole number of hours, days or weeks, e.g. 1h, 24h, 7d, 30d; got {text!r}")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2).lower()]
    if not MIN_PERIOD_S <= seconds <= MAX_PERIOD_S:
        raise ValueError(f"period must be between 1h and 90d; got {text!r}")
    return seconds


def format_period(seconds: int) -> str:
    """``86400`` -> ``24h``, ``604800`` -> ``7d``: hours up to a day, whole days beyond."""
    if seconds > 86_400 and seconds % 86_400 == 0:
        return f"{seconds // 86_400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds}s"


# ------------------------------------------------------------------------------------------ scores

VITALS = tuple(v.lower() for v in VITAL_THRESHOLDS)  # lcp, inp, cls, fcp, ttfb, fid
VITAL_WEIGHTS = {"lcp": 0.25, "inp": 0.25, "cls": 0.25, "fcp": 0.10, "ttfb": 0.10, "fid": 0.05}
COMPONENT_WEIGHTS = {"errors": 0.30, "performance": 0.25, "user_experience": 0.15, "alerts": 0.15, "business": 0.15}
HEALTHY, DEGRADED = 80.0, 50.0

# (good, poor, zero) for band_score; lower is better when good < poor.
ERROR_RATE_BAND = (0.01, 0.05, 0.10)          # errors per page view; 5 % / 10 % are the alert thresholds
BOUNCE_RATE_BAND = (0.40, 0.70, 1.0)
FRUSTRATION_BAND = (0.05, 0.20, 0.40)         # (rage + dead clicks) per session
API_SUCCESS_BAND = (0.99, 0.95, 0.90)         # higher is better
CHECKOUT_SUCCESS_BAND = (0.98, 0.90, 0.80)    # 10 % failures is the checkout alert
UPTIME_BAND = (0.999, 0.99, 0.95)

# Alerts component: 100 minus these points, never below 0.
FIRED_PENALTY = {"critical": 10.0, "warning": 3.0, "info": 1.0}    # per alert fired in the period
ACTIVE_PENALTY = {"critical": 25.0, "warning": 10.0, "info": 10.0}  # per alert still firing at its end

PRIORITIES = ("high", "medium", "low")


def band_score(value: float | None, good: float, poor: float, zero: float | None = None) -> float | None:
    """0-100: 100 at or better than ``good``, 50 at ``poor``, 0 at or beyond ``zero`` (default
    ``2 * poor``), linear in between. Works both ways: lower is better when ``good < poor``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if zero is None:
        zero = 2 * poor
    sign = 1.0 if good < poor else -1.0  # mirror "higher is better" onto "lower is better"
    v, g, p, z = sign * value, sign * good, sign * poor, sign * zero
    if v <= g:
        return 100.0
    if v <= p:
        return 100.0 - 50.0 * (v - g) / (p - g)
    if v < z:
        return 50.0 - 50.0 * (v - p) / (z - p)
    return 0.0


def vital_rating(vital: str, p75: float | None) -> str | None:
    """good (p75 <= good), poor (p75 > poor), else needs-improvement; None without data."""
    if p75 is None:
        return None
    good, poor = VITAL_THRESHOLDS[vital.upper()]
    return "good" if p75 <= good else "poor" if p75 > poor else "needs-improvement"


def vital_score(vital: str, p75: float | None) -> float | None:
    good, poor = VITAL_THRESHOLDS[vital.upper()]
    return band_score(p75, good, poor)


def weighted_mean(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Mean of the scores that are not None, weighted, the weights renormalised over them."""
    present = {k: s for k, s in scores.items() if s is not None}
    total = sum(weights[k] for k in present)
    if not present or total <= 0:
        return None
    return sum(weights[k] * s for k, s in present.items()) / total


def health_status(score: float | None) -> str | None:
    if score is None:
        return None
    return "healthy" if score >= HEALTHY else "degraded" if score >= DEGRADED else "unhealthy"


# ------------------------------------------------------------------------------------------ figures


def figures_template() -> dict[str, Any]:
    """One period's figures as ``build`` fills them: counts from the queries, no derived ratios.
    These are the values of a period without any data."""
    return {
        "rollups": {"rows": 0, "errors": 0, "pageviews": 0, "api_calls": 0, "api_failures": 0, "checkout_calls": 0,
                    "checkout_failures": 0,
                    "vitals": {v: {"samples": 0, "p50": None, "p75": None, "p95": None} for v in VITALS}},
        "uptime": {"api_minutes": 0, "up_minutes": 0},
        "errors": {"raw_errors": 0, "unique_errors": 0, "affected_users": 0},
        "issues": {"resolved": 0, "p95_resolution_time": None, "auto_resolved": 0},
        "ux": {"sessions": 0, "avg_session_duration": None, "bounce_rate": None, "pages_per_session": None,
               "rage_clicks": 0, "dead_clicks": 0},
        "alerts": {"fired": 0, "critical": 0, "warnings": 0, "info": 0, "resolved": 0, "auto_remediated": 0,
                   "mttr": None},
        # alerts still firing at the end of the period: {fingerprint, rule, severity, level, summary,
        # starts_at, value, threshold}, critical first
        "incidents": [],
        # current period only (recommendations)
        "worst_pages": {v: None for v in VITALS},  # {page, p75, samples}
        "top_issue": None,  # {fingerprint, title, culprit, events}
        "top_clicks": {"rage_clicks": None, "dead_clicks": None},  # {page, selector, n}
    }


def _r(value: float | None, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _vital_value(vital: str, value: float | None) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, 3) if vital == "cls" else int(round(value))


def has_data(f: Mapping[str, Any]) -> bool:
    """Whether the period holds anything at all: rollups, errors, sessions, clicks, issue or alert
    activity. Without any, counts are null too (a 0 would claim something was measured)."""
    return bool(f["rollups"]["rows"] or f["errors"]["raw_errors"] or f["ux"]["sessions"] or f["ux"]["rage_clicks"]
                or f["ux"]["dead_clicks"] or f["alerts"]["fired"] or f["alerts"]["resolved"] or f["issues"]["resolved"]
                or f["issues"]["auto_resolved"] or f["incidents"])


def _level(incident: Mapping[str, Any]) -> str:
    level = incident.get("level") or incident.get("severity")
    return level if level in ("critical", "warning") else "info"


def sections(f: Mapping[str, Any], average_order_value: float | None = None
             ) -> tuple[dict[str, Any], dict[str, float | None]]:
    """One period's report sections (errors, performance, user_experience, alerts, business, with
    values rounded for output) and its unrounded component scores (None = no data)."""
    data = has_data(f)
    ro, err, iss, ux, al = f["rollups"], f["errors"], f["issues"], f["ux"], f["alerts"]

    def count(value: int) -> int | None:
        return int(value) if data else None

    error_rate = _ratio(ro["errors"], ro["pageviews"])
    errors = {"total_24h": int(ro["errors"]) if ro["rows"] else None, "error_rate": _r(error_rate),
              "unique_errors": count(err["unique_errors"]), "affected_users": count(err["affected_users"]),
              "auto_resolved": count(iss["auto_resolved"]),
              "p95_resolution_time": _r(iss["p95_resolution_time"], 1) if iss["resolved"] else None}

    performance: dict[str, Any] = {}
    vital_scores: dict[str, float | None] = {}
    for v in VITALS:
        fig = ro["vitals"][v]
        sampled = bool(fig["samples"])
        p75 = fig["p75"] if sampled else None
        vital_scores[v] = vital_score(v, p75)
        performance[v] = {"p50": _vital_value(v, fig["p50"]) if sampled else None,
                          "p75": _vital_value(v, p75), "p95": _vital_value(v, fig["p95"]) if sampled else None,
                          "rating": vital_rating(v, p75), "score": _r(vital_scores[v], 1)}
    perf_score = weighted_mean(vital_scores, VITAL_WEIGHTS)
    performance["score"] = _r(perf_score, 1)

    sessions = int(ux["sessions"])
    user_experience = {"rage_clicks": count(ux["rage_clicks"]), "dead_clicks": count(ux["dead_clicks"]),
                       "avg_session_duration": _r(ux["avg_session_duration"], 1) if sessions else None,
                       "bounce_rate": _r(ux["bounce_rate"]) if sessions else None,
                       "pages_per_session": _r(ux["pages_per_session"], 2) if sessions else None,
                       "sessions": count(sessions)}
    frustration = _ratio(ux["rage_clicks"] + ux["dead_clicks"], sessions)
    ux_scores = [band_score(ux["bounce_rate"], *BOUNCE_RATE_BAND) if sessions else None,
                 band_score(frustration, *FRUSTRATION_BAND)]
    ux_present = [s for s in ux_scores if s is not None]
    ux_score = sum(ux_present) / len(ux_present) if ux_present else None

    alerts = {"total": count(al["fired"]), "critical": count(al["critical"]), "warnings": count(al["warnings"]),
              "info": count(al["info"]), "auto_remediated": count(al["auto_remediated"]),
              "mttr": _r(al["mttr"], 1) if al["resolved"] else None}
    alert_score = None
    if data:
        penalty = (FIRED_PENALTY["critical"] * al["critical"] + FIRED_PENALTY["warning"] * al["warnings"]
                   + FIRED_PENALTY["info"] * al["info"]
                   + sum(ACTIVE_PENALTY[_level(i)] for i in f["incidents"]))
        alert_score = max(0.0, 100.0 - penalty)

    api_success = None if not ro["api_calls"] else 1 - ro["api_failures"] / ro["api_calls"]
    checkout_success = None if not ro["checkout_calls"] else 1 - ro["checkout_failures"] / ro["checkout_calls"]
    uptime = _ratio(f["uptime"]["up_minutes"], f["uptime"]["api_minutes"])
    revenue = (round(ro["checkout_failures"] * average_order_value, 2)
               if average_order_value is not None and ro["checkout_calls"] else None)
    business = {"checkout_success_rate": _r(checkout_success), "api_success_rate": _r(api_success),
                "revenue_impact": revenue, "uptime": _r(uptime)}
    business_scores = [s for s in (band_score(api_success, *API_SUCCESS_BAND),
                                    band_score(checkout_success, *CHECKOUT_SUCCESS_BAND),
                                    band_score(uptime, *UPTIME_BAND)) if s is not None]
    business_score = sum(business_scores) / len(business_scores) if business_scores else None

    components = {"errors": band_score(error_rate, *ERROR_RATE_BAND), "performance": perf_score,
                  "user_experience": ux_score, "alerts": alert_score, "business": business_score}
    return ({"errors": errors, "performance": performance, "user_experience": user_experience, "alerts": alerts,
             "business": business}, components)


def health_components(components: Mapping[str, float | None]) -> dict[str, dict[str, float | None]]:
    """Each component's score, nominal weight and the weight it actually had (renormalised over the
    components with data; 0 without data)."""
    total = sum(COMPONENT_WEIGHTS[k] for k, s in components.items() if s is not None)
    return {k: {"score": _r(s, 1), "weight": COMPONENT_WEIGHTS[k],
                "effective_weight": round(COMPONENT_WEIGHTS[k] / total, 4) if s is not None and total else 0.0}
            for k, s in components.items()}


def health_score(components: Mapping[str, float | None]) -> float | None:
    """Weighted mean of the component scores that have data (weights renormalised), one decimal."""
    return _r(weighted_mean(components, COMPONENT_WEIGHTS), 1)


# ------------------------------------------------------------------------------------------ trend

TREND_TOLERANCE = 0.01  # a change within 1 % of the previous value is flat


def trend_entry(current: float | None, previous: float | None, digits: int = 4) -> dict[str, Any]:
    """``{current, previous, change, direction}``; change and direction are None unless both exist.
    flat: no change, or within 1 % of the previous value; else up or down."""
    if current is None or previous is None:
        return {"current": current, "previous": previous, "change": None, "direction": None}
    change = round(current - previous, digits)
    if change == 0 or (previous != 0 and abs(change) <= TREND_TOLERANCE * abs(previous)):
        direction = "flat"
    else:
        direction = "up" if change > 0 else "down"
    return {"current": current, "previous": previous, "change": change, "direction": direction}


TREND_FIGURES: dict[str, tuple[tuple[str, ...], int]] = {
    # name -> (path in the report, digits of the change)
    "error_rate": (("errors", "error_rate"), 4),
    "lcp_p75": (("performance", "lcp", "p75"), 0),
    "inp_p75": (("performance", "inp", "p75"), 0),
    "api_success_rate": (("business", "api_success_rate"), 4),
    "checkout_success_rate": (("business", "checkout_success_rate"), 4),
    "bounce_rate": (("user_experience", "bounce_rate"), 4),
    "rage_clicks": (("user_experience", "rage_clicks"), 0),
}


def _at(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def trend(current: Mapping[str, Any], previous: Mapping[str, Any], current_score: float | None,
          previous_score: float | None) -> dict[str, Any]:
    out = {"health_score": trend_entry(current_score, previous_score, 1)}
    for name, (path, digits) in TREND_FIGURES.items():
        entry = trend_entry(_at(current, path), _at(previous, path), digits)
        if digits == 0 and entry["change"] is not None:
            entry["change"] = int(entry["change"])
        out[name] = entry
    return out


# ------------------------------------------------------------------------------------------ recommendations


def _ms(vital: str, value: float) -> str:
    return f"{value:.3f}" if vital == "cls" else f"{value:.0f} ms"


def recommendations(report: Mapping[str, Any], f: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rule-based advice from the current period's sections and figures, high priority first.
    The rules and their thresholds are listed in docs/report.md."""
    out: list[dict[str, str]] = []

    def add(priority: str, area: str, message: str) -> None:
        out.append({"priority": priority, "area": area, "message": message})

    incidents = f["incidents"]
    for level, priority in (("critical", "high"), ("warning", "medium")):
        firing = [i for i in incidents if (_level(i) == level)]
        if firing:
            first = firing[0]
            more = f" (and {len(firing) - 1} more)" if len(firing) > 1 else ""
            add(priority, "alerts", f"{len(firing)} {level} alert{'s' if len(firing) > 1 else ''} firing: "
                                    f"{first['rule']}: {first['summary'] or first['fingerprint']} since "
                                    f"{first['starts_at']}{more}. Acknowledge and work the incident.")

    rate = report["errors"]["error_rate"]
    if rate is not None and rate > ERROR_RATE_BAND[1]:
        priority = "high" if rate > ERROR_RATE_BAND[2] else "medium"
        limit = ERROR_RATE_BAND[2] if rate > ERROR_RATE_BAND[2] else ERROR_RATE_BAND[1]
        top = f["top_issue"]
        issue = (f" Top issue: {top['title'] or top['fingerprint']} ({top['events']} errors, fingerprint "
                 f"{top['fingerprint'][:12]}); fix it first." if top else "")
        add(priority, "errors", f"Error rate is {rate:.1%} of page views (above {limit:.0%}).{issue}")

    for v in VITALS:
        vital = report["performance"][v]
        if vital["rating"] in ("poor", "needs-improvement"):
            good, poor = VITAL_THRESHOLDS[v.upper()]
            worst = f["worst_pages"].get(v)
            where = (f" Worst page: {worst['page'] or '(unknown)'} (p75 {_ms(v, worst['p75'])} over "
                     f"{worst['samples']} samples)." if worst else "")
            add("high" if vital["rating"] == "poor" else "medium", "performance",
                f"{v.upper()} p75 is {_ms(v, vital['p75'])} ({vital['rating']}; good <= {_ms(v, good)}, "
                f"poor > {_ms(v, poor)}).{where}")

    business = report["business"]
    ro = f["rollups"]
    checkout = business["checkout_success_rate"]
    if checkout is not None and checkout < CHECKOUT_SUCCESS_BAND[0]:
        revenue = business["revenue_impact"]
        impact = f"; estimated revenue impact {revenue:,.2f}" if revenue is not None else ""
        add("high" if checkout < CHECKOUT_SUCCESS_BAND[1] else "medium", "business",
            f"Checkout success is {checkout:.1%} ({ro['checkout_failures']} of {ro['checkout_calls']} checkout calls "
            f"failed{impact}).")
    api = business["api_success_rate"]
    if api is not None and api < API_SUCCESS_BAND[0]:
        add("high" if api < API_SUCCESS_BAND[1] else "medium", "business",
            f"API success is {api:.1%} ({ro['api_failures']} of {ro['api_calls']} calls failed).")
    up = business["uptime"]
    if up is not None and up < UPTIME_BAND[0]:
        add("high" if up < UPTIME_BAND[1] else "medium", "business",
            f"Uptime is {up:.2%} of minutes with API calls (a minute is up when enough of its calls succeed).")

    ux = report["user_experience"]
    rage = ux["rage_clicks"] or 0
    top_rage = f["top_clicks"]["rage_clicks"]
    if rage and top_rage:
        per_session = _ratio(rage, ux["sessions"] or 0)
        priority = "medium" if per_session is None or per_session >= FRUSTRATION_BAND[0] else "low"
        add(priority, "user_experience",
            f"{rage} rage click{'s' if rage > 1 else ''}; most on {top_rage['selector'] or '(no selector)'} at "
            f"{top_rage['page'] or '(unknown page)'} ({top_rage['n']}). Check that it responds quickly and visibly.")
    dead = ux["dead_clicks"] or 0
    top_dead = f["top_clicks"]["dead_clicks"]
    if dead and top_dead:
        add("low", "user_experience",
            f"{dead} dead click{'s' if dead > 1 else ''}; most on {top_dead['selector'] or '(no selector)'} at "
            f"{top_dead['page'] or '(unknown page)'} ({top_dead['n']}). Make it interactive or look less clickable.")
    bounce = ux["bounce_rate"]
    if bounce is not None and bounce > BOUNCE_RATE_BAND[1]:
        add("medium", "user_experience", f"Bounce rate is {bounce:.1%} (above {BOUNCE_RATE_BAND[1]:.0%}).")
    return sorted(out, key=lambda r: PRIORITIES.index(r["priority"]))


# ------------------------------------------------------------------------------------------ the report

ACTIVE_INCIDENTS_SHOWN = 20


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def health_report(current: Mapping[str, Any], previous: Mapping[str, Any], *, start: datetime, end: datetime,
                  project: str | None, generated_at: datetime,
                  average_order_value: float | None = None) -> dict[str, Any]:
    """The ``monitoring_health_check`` document from both periods' figures."""
    cur, cur_components = sections(current, average_order_value)
    prev, prev_components = sections(previous, average_order_value)
    score, prev_score = health_score(cur_components), health_score(prev_components)
    incidents = [{"fingerprint": i["fingerprint"], "rule": i["rule"], "severity": i["severity"],
                  "summary": i["summary"], "starts_at": i["starts_at"], "value": _r(i["value"], 6),
                  "threshold": _r(i["threshold"], 6)}
                 for i in current["incidents"][:ACTIVE_INCIDENTS_SHOWN]]
    body = {
        "generated_at": iso(generated_at),
        "period": {"start": iso(start), "end": iso(end), "length": format_period(int((end - start).total_seconds()))},
        "project": project,
        **cur,
        "active_incidents": incidents,
        "recommendations": recommendations(cur, current),
        "health_score": score,
        "health_status": health_status(score),
        "health_components": health_components(cur_components),
        "trend": trend(cur, prev, score, prev_score),
    }
    return {"monitoring_health_check": body}
