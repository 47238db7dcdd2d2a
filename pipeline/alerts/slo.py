"""SLO error budgets and multiwindow, multi-burn-rate alerts (Google SRE workbook). Pure.

A threshold on an error rate either pages for every blip or notices a slow leak only when the
month's budget is gone. Burn rates fix that: burn = (bad / total in a window) / (1 - objective), the
speed at which the budget is spent (1 = exactly the whole budget over the period). The workbook's
defaults for a 30-day objective, each requiring the burn over a long *and* a short window, the short
one (1/12 of the long) so the alert resolves soon after the burning stops:

* page   when burn > 14.4 over 1h and over 5m  (2 % of the budget in an hour),
* page   when burn > 6    over 6h and over 30m (5 % in six hours),
* ticket when burn > 1    over 3d and over 6h  (10 % in three days).

``budget_remaining`` = 1 - burn over the whole period: the fraction of the period's budget not yet
spent (1 with no traffic; below 0 when overspent).

Memory: exact per-minute counts for 30 days would be 43 200 pairs per series, and 4 320 for the 3-day
window alone. Instead each series keeps the same minutes at three resolutions, about 470 buckets
in all: minutes for the last 6 h (360), hours for the longest burn window (3 d: 73), days for the
period (31). A window is summed from the finest resolution that reaches back far enough, so every
window up to 6 h (5m, 30m, 1h, 6h) is exact; for 3 d and for the period, the oldest bucket, only
partly inside the window, is counted pro rata (traffic assumed even within that hour or day). That
edge error is at most one hour in 72 for the ticket, and one day in 30 for the budget: well within
what a ticket or a budget report needs, while the paging windows stay exact.

Input: per-minute (good, total) counts of closed minutes, in order (``SloEvaluator.evaluate`` takes
the minute's rollup aggregates; ``SloSeries.observe`` the counts). A minute at or before the last one
is a replay and ignored; a minute without data for a series counts as no traffic. Output: ``AlertEvent``
(``pipeline/alerts/evaluate.py``) with severity ``page`` or ``ticket``, firing and resolved per
severity (one alert per severity, either window pair can keep it firing), and ``status()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.alerts.evaluate import AlertEvent, WindowAggregate, _series_key, event_id, fingerprint, merge
from pipeline.alerts.rules import RuleSet, Slo, format_duration, render

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MINUTE_TIER_MS = 6 * HOUR_MS  # windows up to this long are summed exactly from minutes
STATE_VERSION = 1


@dataclass
class Tier:
    """(good, total) per bucket of ``size_ms``, ascending, reaching ``horizon_ms`` back."""

    size_ms: int
    horizon_ms: int
    rows: list[list[int]] = field(default_factory=list)  # [[bucket_start, good, total]]

    def add(self, ts_ms: int, good: int, total: int) -> None:
        start = ts_ms - ts_ms % self.size_ms
        if self.rows and self.rows[-1][0] == start:
            self.rows[-1][1] += good
            self.rows[-1][2] += total
        else:
            self.rows.append([start, good, total])

    def trim(self, now_ms: int) -> None:
        cut = now_ms - self.horizon_ms
        i = 0
        while i < len(self.rows) and self.rows[i][0] + self.size_ms <= cut:
            i += 1
        del self.rows[:i]

    def sums(self, start_ms: int, end_ms: int) -> tuple[float, float]:
        """(good, total) in ``[start_ms, end_ms)``; a bucket straddling ``start_ms`` counts pro rata."""
        good = total = 0.0
        for b, g, t in self.rows:
            if b >= end_ms or b + self.size_ms <= start_ms:
                continue
            f = 1.0 if b >= start_ms else (b + self.size_ms - start_ms) / self.size_ms
            good += g * f
            total += t * f
        return good, total


@dataclass
class SloSeries:
    """One series' minutes at three resolutions (see the module docstring)."""

    tiers: list[Tier]
    last_minute_ms: int | None = None

    @classmethod
    def for_slo(cls, slo: Slo) -> "SloSeries":
        longest = max(max(w.long_ms for w in slo.burn_windows), MINUTE_TIER_MS)
        return cls([Tier(MINUTE_MS, MINUTE_TIER_MS), Tier(HOUR_MS, longest), Tier(DAY_MS, slo.period_ms)])

    def observe(self, minute_start_ms: int, good: int, total: int) -> bool:
        """Add one closed minute's counts; False (ignored) for a minute at or before the last one."""
        if minute_start_ms % MINUTE_MS:
            raise ValueError(f"minute start {minute_start_ms} is not on a minute")
        if not 0 <= good <= total:
            raise ValueError(f"expected 0 <= good <= total, got good={good} total={total}")
        if self.last_minute_ms is not None and minute_start_ms <= self.last_minute_ms:
            return False
        self.last_minute_ms = minute_start_ms
        for tier in self.tiers:
            if total:
                tier.add(minute_start_ms, good, total)
            tier.trim(minute_start_ms + MINUTE_MS)
        return True

    def counts(self, window_ms: int, at_ms: int) -> tuple[float, float]:
        """(good, total) of the window ending at ``at_ms``, from the finest tier reaching back far enough."""
        for tier in self.tiers:
            if window_ms <= tier.horizon_ms:
                return tier.sums(at_ms - window_ms, at_ms)
        return self.tiers[-1].sums(at_ms - window_ms, at_ms)

    def burn_rate(self, window_ms: int, at_ms: int, objective: float) -> float:
        good, total = self.counts(window_ms, at_ms)
        return 0.0 if total <= 0 else (total - good) / total / (1 - objective)

    def budget_remaining(self, period_ms: int, at_ms: int, objective: float) -> float:
        return 1.0 - self.burn_rate(period_ms, at_ms, objective)

    @property
    def empty(self) -> bool:
        return not any(t.rows for t in self.tiers)

    def to_json(self) -> dict[str, Any]:
        return {"last_minute_ms": self.last_minute_ms,
                "tiers": [{"size_ms": t.size_ms, "horizon_ms": t.horizon_ms, "rows": t.rows} for t in self.tiers]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "SloSeries":
        return cls([Tier(int(t["size_ms"]), int(t["horizon_ms"]), [list(r) for r in t["rows"]]) for t in doc["tiers"]],
                   doc.get("last_minute_ms"))


def tripped(slo: Slo, series: SloSeries, at_ms: int) -> list[tuple[str, str, float, float]]:
    """(severity, window pair, long-window burn, its threshold) of every burn window condition that
    holds at ``at_ms``, in the SLO's order."""
    out = []
    for bw in slo.burn_windows:
        long = series.burn_rate(bw.long_ms, at_ms, slo.objective)
        short = series.burn_rate(bw.short_ms, at_ms, slo.objective)
        if long > bw.burn_rate and short > bw.burn_rate:
            out.append((bw.severity, bw.name, long, bw.burn_rate))
    return out


@dataclass
class SloSeriesState:
    project: str
    labels: dict[str, str]
    series: SloSeries
    firing: dict[str, dict[str, Any]] = field(default_factory=dict)  # severity -> {starts_at, windows, threshold}

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "labels": self.labels, "series": self.series.to_json(),
                "firing": self.firing}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "SloSeriesState":
        return cls(doc["project"], dict(doc["labels"]), SloSeries.from_json(doc["series"]),
                   {k: dict(v) for k, v in doc.get("firing", {}).items()})


@dataclass(frozen=True)
class SloStatus:
    """Where one SLO series stands at ``at``: the period's counts, budget left, burn per window."""

    slo: str
    project: str
    labels: dict[str, str]
    at: int
    good: float
    total: float
    budget_remaining: float
    burn_rates: dict[str, float]
    firing: tuple[str, ...]


class SloEvaluator:
    """Every SLO's series, advanced one closed minute at a time."""

    def __init__(self, slos: RuleSet | Iterable[Slo], state: Mapping[str, Any] | None = None,
                 max_series: int | None = None) -> None:
        """``max_series``: the most series one SLO tracks (``PULSE_ALERTS_MAX_SERIES``); a new series
        beyond it is not counted and adds one to ``dropped[slo]``. None: no limit."""
        items = slos.slos if isinstance(slos, RuleSet) else tuple(slos)
        self.max_series = max_series
        self.dropped: dict[str, int] = {}
        self._slos: dict[str, Slo] = {s.name: s for s in items}
        self._last: dict[str, int | None] = {name: None for name in self._slos}
        self._series: dict[str, dict[str, SloSeriesState]] = {name: {} for name in self._slos}
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown SLO state version {state.get('version')!r}")
            for name, doc in state.get("slos", {}).items():
                if name in self._slos:
                    self._last[name] = doc.get("last_minute_ms")
                    self._series[name] = {k: SloSeriesState.from_json(s) for k, s in doc.get("series", {}).items()}

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "slos": {
            name: {"last_minute_ms": self._last[name],
                   "series": {k: s.to_json() for k, s in sorted(self._series[name].items())}}
            for name in self._slos}}

    def series(self, slo: str) -> dict[str, SloSeriesState]:
        return self._series[slo]

    def evaluate(self, minute_start_ms: int, aggregates: Iterable[WindowAggregate]) -> list[AlertEvent]:
        """One closed minute: add its counts (``aggregates`` of that minute, any labels) to every
        SLO's series, then fire or resolve each series' page / ticket alerts as of the minute's end."""
        aggs = list(aggregates)
        for a in aggs:
            if a.window_start_ms != minute_start_ms or a.window_ms != MINUTE_MS:
                raise ValueError(f"aggregate of {a.window_start_ms}+{a.window_ms}ms is not the minute "
                                 f"{minute_start_ms}")
        at = minute_start_ms + MINUTE_MS
        out: list[AlertEvent] = []
        for name, slo in self._slos.items():
            last = self._last[name]
            if last is not None and minute_start_ms <= last:
                continue  # a replayed minute
            self._last[name] = minute_start_ms
            states = self._series[name]
            for agg in merge(aggs, MINUTE_MS, slo.group_by):
                key = _series_key(agg.project, agg.labels)
                st = states.get(key)
                if st is None:
                    if self.max_series is not None and len(states) >= self.max_series:
                        self.dropped[name] = self.dropped.get(name, 0) + 1
                        continue
                    st = states[key] = SloSeriesState(agg.project, dict(agg.labels), SloSeries.for_slo(slo))
                st.series.observe(minute_start_ms, *slo.counts(agg.counters))
            for key in sorted(states):
                st = states[key]
                for tier in st.series.tiers:
                    tier.trim(at)
                out += self._transitions(slo, st, minute_start_ms, at)
                if st.series.empty and not st.firing:
                    del states[key]
        return out

    def _transitions(self, slo: Slo, st: SloSeriesState, minute_start: int, at: int) -> list[AlertEvent]:
        conditions = tripped(slo, st.series, at)
        out = []
        for severity in dict.fromkeys(bw.severity for bw in slo.burn_windows):
            hits = [c for c in conditions if c[0] == severity]
            firing = st.firing.get(severity)
            if hits and firing is None:
                _, windows, burn, threshold = hits[0]
                st.firing[severity] = {"starts_at": at, "windows": windows, "threshold": threshold}
                out.append(self._event(slo, st, "firing", severity, at, None, at, minute_start, burn, threshold,
                                       windows))
            elif not hits and firing is not None:
                windows, threshold = firing["windows"], firing["threshold"]
                bw = next((w for w in slo.burn_windows if w.name == windows), slo.burn_windows[0])
                burn = st.series.burn_rate(bw.long_ms, at, slo.objective)
                del st.firing[severity]
                out.append(self._event(slo, st, "resolved", severity, int(firing["starts_at"]), at, at,
                                       minute_start, burn, threshold, windows))
        return out

    def _event(self, slo: Slo, st: SloSeriesState, status: str, severity: str, starts_at: int,
               ends_at: int | None, at: int, minute_start: int, burn: float, threshold: float,
               windows: str) -> AlertEvent:
        labels = {"project": st.project, **st.labels, **slo.labels, "severity": severity}
        fp = fingerprint(slo.name, labels)
        budget = st.series.budget_remaining(slo.period_ms, at, slo.objective)
        rates = {format_duration(w): st.series.burn_rate(w, at, slo.objective) for w in _windows(slo)}
        context = {**labels, "labels": labels, "slo": slo.name, "rule": slo.name, "value": burn,
                   "threshold": threshold, "severity": severity, "windows": windows, "budget_remaining": budget,
                   "objective": slo.objective, "period": format_duration(slo.period_ms)}
        return AlertEvent(
            event_id=event_id(fp, status, minute_start), fingerprint=fp, rule=slo.name,
            status=status,  # type: ignore[arg-type]
            severity=severity, labels=labels, starts_at=starts_at, ends_at=ends_at, at=at, value=burn,
            threshold=threshold, summary=render(slo.summary_template, context),
            runbook_url=render(slo.runbook_url, context) if slo.runbook_url else None,
            annotations={"kind": "slo", "slo_kind": slo.kind, "objective": slo.objective, "windows": windows,
                         "burn_rates": rates, "budget_remaining": budget})

    def status(self) -> list[SloStatus]:
        """Every series of every SLO as of the end of the last evaluated minute."""
        out = []
        for name, slo in self._slos.items():
            last = self._last[name]
            if last is None:
                continue
            at = last + MINUTE_MS
            for key in sorted(self._series[name]):
                st = self._series[name][key]
                good, total = st.series.counts(slo.period_ms, at)
                out.append(SloStatus(
                    name, st.project, dict(st.labels), at, good, total,
                    st.series.budget_remaining(slo.period_ms, at, slo.objective),
                    {format_duration(w): st.series.burn_rate(w, at, slo.objective) for w in _windows(slo)},
                    tuple(sorted(st.firing))))
        return out


def _windows(slo: Slo) -> list[int]:
    return sorted({w for bw in slo.burn_windows for w in (bw.long_ms, bw.short_ms)})
