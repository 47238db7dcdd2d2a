"""Rules applied to closed windows of rollup aggregates: alert state machines and their events. Pure.

No clock, no I/O: the caller (the worker) decides when an event-time window is closed (its end plus
the allowed lateness is behind the watermark) and hands over that window's aggregates; time only
moves when a window is evaluated, so a replay of the same input gives the same events with the
same ids, and the state (``to_json``) can live in a changelog: restoring it mid-sequence and
continuing gives exactly the events an uninterrupted run would have given.

Aggregates and series. A ``WindowAggregate`` is one rollup partial (``pipeline/rollups/minute``):
counters and DDSketch bucket maps of one project, window and label set. ``merge`` sums aggregates
into a rule's window (five 1-minute ones make a 5-minute one) after projecting their labels onto
the rule's ``group_by`` (``project``: ``{environment: prod, page: /cart}`` -> ``{environment:
prod}`` for ``group_by: [environment]``). A *series* is (rule, project + group labels); each has
a small ``SeriesState``.

Semantics, per series and closed window ``[s, e)``, levels info < warning < critical:

* A level *holds* when the value meets its threshold (``comparison``, default ``>``) and the
  window has at least ``min_volume`` (denominator, samples, or count).
* **No data** (no aggregate for the series in the window, a zero denominator, an empty sketch, or
  below ``min_volume``) means *the condition is not met*: it breaks a pending ``for`` and, after
  ``keep_firing_for``, resolves a firing alert. A series that stops reporting therefore resolves
  instead of firing forever; windows the caller skipped (e.g. the worker was down) count as windows
  without data. Use ``keep_firing_for`` when a quiet window should not end an incident.
* ``for``: a level fires once it has held in consecutive windows covering at least ``for``
  (``for: 3m`` on 1m windows = 3 windows in a row; 0 = the first window). ``starts_at`` is the
  start of the first of those windows.
* ``hysteresis`` h: a firing level keeps holding while the value meets ``threshold * (1 - h)``
  (``* (1 + h)`` for ``<``/``<=``), so a value hovering at the line does not flap.
* ``keep_firing_for``: once the firing level stops holding, it keeps firing until it has not held
  for longer than this (0 = resolve in the first window it does not hold); holding again in the
  meantime simply continues the alert.
* **Severity changes**: the firing level is the highest level that qualifies. Severity is part of
  an alert's identity (its ``severity`` label is in the fingerprint, as in Alertmanager), so a
  change, up (warning -> critical: critical must qualify on its own, ``for`` included) or down
  (critical stops holding while warning still holds: no ``for`` again), emits ``firing`` for the
  new severity *first* and then ``resolved`` for the old one: a consumer keyed by fingerprint
  never sees the series clear in between, and every ``firing`` is closed by exactly one
  ``resolved`` of the same fingerprint.
* Spikes: the value is the window's count over the trailing baseline's average per window (a
  ring of the last N windows' counts in the state; windows without data count 0; an average
  below 1 counts as 1). A rule gives no verdict (not met) until it has been evaluated for a full
  baseline, so a restart without state does not compare against an empty past.

Issue rules are not windowed: ``on_transition`` turns one issue transition (the dict of
``pipeline/issues/lifecycle.Transition.to_json()``) into ``firing`` events, one per matching rule,
and never resolves them: a transition is a moment, not a condition that holds. The alerts topic
carries only the alertable kinds (new, regressed, escalating); whether the issue is later resolved is a
person's decision, shown on the issue, not something to page about. Their event id derives from
the transition id, so a replayed transition yields the same event.

Identity: ``fingerprint`` = hash of the rule name and the sorted event labels (project, group
labels, static labels, severity); ``event_id`` = uuid5(fingerprint, status, window start).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pipeline.alerts.rules import (
    LEVEL_RANK,
    IssueRule,
    PercentileRule,
    RatioRule,
    RuleSet,
    VitalRatingRule,
    WindowedRule,
    _SpikeBase,
    format_duration,
    render,
)
from pipeline.rollups.minute import COUNTERS, SKETCHES
from pipeline.rollups.sketch import quantile

NAMESPACE = uuid.UUID("6a1c2f0e-4b7d-4c83-9f25-2d8e0b1a7c44")
STATE_VERSION = 1
Status = Literal["firing", "resolved"]


# ---------------------------------------------------------------------------------------- identity


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable across processes and releases: the rule name and the sorted labels."""
    text = "\x1e".join([rule, *(f"{k}\x1f{labels[k]}" for k in sorted(labels))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def event_id(fp: str, status: str, at: int | str) -> str:
    """Deterministic: a replayed window (or transition) gives the same id, so consumers deduplicate."""
    return str(uuid.uuid5(NAMESPACE, f"{fp}\x1f{status}\x1f{at}"))


@dataclass(frozen=True)
class AlertEvent:
    """One transition of one alert: ``firing`` (of a severity) or ``resolved``. Times are epoch ms;
    ``at`` is when it was decided (the end of the evaluated window, or the transition's time)."""

    event_id: str
    fingerprint: str
    rule: str
    status: Status
    severity: str
    labels: dict[str, str]
    starts_at: int
    ends_at: int | None
    at: int
    value: float | None
    threshold: float | None
    summary: str
    runbook_url: str | None = None
    remediation_webhook: str | None = None  # on firing events only: called once when it fires
    annotations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "AlertEvent":
        return cls(**doc)


# ---------------------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class WindowAggregate:
    """Counters and sketches of one project, window and label set (a rollup partial or a merge)."""

    project: str
    window_start_ms: int
    window_ms: int
    labels: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    sketches: dict[str, dict[int, int]] = field(default_factory=dict)

    @classmethod
    def from_rollup_row(cls, row: Mapping[str, Any], window_ms: int = 60_000) -> "WindowAggregate":
        """From a row of ``pipeline.rollups.minute.rollup_rows`` (``minute`` in epoch seconds)."""
        return cls(str(row["project"]), int(row["minute"]) * 1000, window_ms,
                   {k: str(row.get(k) or "") for k in ("environment", "release", "page", "browser")},
                   {k: int(row[k]) for k in COUNTERS if row.get(k)},
                   {k: {int(b): int(n) for b, n in row[k].items()} for k in SKETCHES if row.get(k)})


def _ms(ts: Any) -> int:
    if isinstance(ts, (int, float)):
        return int(ts)
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        return int(ts.timestamp() * 1000)
    raise ValueError(f"not a timestamp: {ts!r}")


def ux_aggregates(signals: Iterable[Mapping[str, Any]], window_ms: int = 60_000) -> list[WindowAggregate]:
    """Rage and dead click signals (``pipeline/sessions/rows.signals``, or their JSON) counted per
    project, page and window as ``rage_clicks`` / ``dead_clicks``. Deduplicate by ``signal_id`` first:
    delivery is at least once."""
    counts: dict[tuple[str, int, str], dict[str, int]] = {}
    for sig in signals:
        counter = {"rage_click": "rage_clicks", "dead_click": "dead_clicks"}.get(sig.get("signal", ""))
        if counter is None:
            continue
        ts = _ms(sig["timestamp"])
        key = (str(sig["project"]), ts - ts % window_ms, str(sig.get("page") or ""))
        c = counts.setdefault(key, {})
        c[counter] = c.get(counter, 0) + 1
    return [WindowAggregate(p, start, window_ms, {"page": page}, c) for (p, start, page), c in sorted(counts.items())]


def project_labels(agg: WindowAggregate, group_by: Iterable[str]) -> dict[str, str]:
    """The aggregate's labels restricted to ``group_by`` (missing ones as ``""``)."""
    return {k: agg.labels.get(k, "") for k in group_by}


def _series_key(project: str, labels: Mapping[str, str]) -> str:
    return json.dumps([project, sorted(labels.items())], separators=(",", ":"))


def merge(aggregates: Iterable[WindowAggregate], window_ms: int,
          group_by: Iterable[str] | None = None) -> list[WindowAggregate]:
    """Sum aggregates into epoch-aligned windows of ``window_ms`` per project and label set,
    labels first projected onto ``group_by`` (``None`` keeps them as they are). Counters and sketch
    buckets add up, so merging is exact for both rates and quantiles."""
    keys = None if group_by is None else tuple(group_by)
    acc: dict[tuple[int, str], tuple[str, dict[str, str], dict[str, int], dict[str, dict[int, int]]]] = {}
    for agg in aggregates:
        if agg.window_ms > window_ms or window_ms % agg.window_ms:
            raise ValueError(f"cannot merge {format_duration(agg.window_ms)} aggregates into "
                             f"{format_duration(window_ms)} windows")
        start = agg.window_start_ms - agg.window_start_ms % window_ms
        labels = dict(agg.labels) if keys is None else project_labels(agg, keys)
        slot = acc.get((start, _series_key(agg.project, labels)))
        if slot is None:
            slot = acc[(start, _series_key(agg.project, labels))] = (agg.project, labels, {}, {})
        counters, sketches = slot[2], slot[3]
        for name, n in agg.counters.items():
            counters[name] = counters.get(name, 0) + n
        for name, buckets in agg.sketches.items():
            target = sketches.setdefault(name, {})
            for b, n in buckets.items():
                target[b] = target.get(b, 0) + n
    return [WindowAggregate(project, start, window_ms, labels, counters, sketches)
            for (start, _), (project, labels, counters, sketches) in sorted(acc.items())]


# ---------------------------------------------------------------------------------------- state


@dataclass
class SeriesState:
    """One (rule, label set): what it fires, for how long each level has held, and a spike ring."""

    project: str
    labels: dict[str, str]  # the group labels (project apart)
    level: str | None = None  # the firing level
    starts_at: int | None = None  # of the firing level's alert
    runs: dict[str, int] = field(default_factory=dict)  # level -> start of its current run of windows
    clear_since: int | None = None  # start of the first window the firing level stopped holding
    counts: list[list[int]] = field(default_factory=list)  # spike: [[window_start, count]] of the baseline

    @property
    def idle(self) -> bool:
        return self.level is None and not self.runs and not self.counts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "SeriesState":
        return cls(**{**doc, "runs": dict(doc.get("runs", {})), "counts": [list(c) for c in doc.get("counts", [])]})


@dataclass
class RuleState:
    last_window_ms: int | None = None  # the last window evaluated: older ones are replays
    first_window_ms: int | None = None  # the first window evaluated: spike warm-up
    series: dict[str, SeriesState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"last_window_ms": self.last_window_ms, "first_window_ms": self.first_window_ms,
                "series": {k: s.to_json() for k, s in sorted(self.series.items())}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RuleState":
        return cls(doc.get("last_window_ms"), doc.get("first_window_ms"),
                   {k: SeriesState.from_json(s) for k, s in doc.get("series", {}).items()})


# ---------------------------------------------------------------------------------------- values


def measure(rule: WindowedRule, agg: WindowAggregate | None) -> tuple[float | None, int]:
    """(value, volume) of a non-spike rule over one merged window; value None when undefined."""
    if agg is None:
        return None, 0
    if isinstance(rule, RatioRule):
        den = agg.counters.get(rule.denominator, 0)
        return (agg.counters.get(rule.numerator, 0) / den if den > 0 else None), den
    if isinstance(rule, PercentileRule | VitalRatingRule):
        name = rule.sketch if isinstance(rule, PercentileRule) else rule.vital
        sketch = agg.sketches.get(name) or {}
        return quantile(sketch, rule.quantile), sum(sketch.values())
    raise TypeError(f"measure() does not handle {type(rule).__name__}")


def fields_read(rule: WindowedRule) -> tuple[frozenset[str], frozenset[str]]:
    """(counters, sketches) of an aggregate that ``measure`` / the spike ring read for ``rule``:
    everything else in an aggregate is irrelevant to it, so a buffer may leave it out."""
    if isinstance(rule, RatioRule):
        return frozenset((rule.numerator, rule.denominator)), frozenset()
    if isinstance(rule, PercentileRule):
        return frozenset(), frozenset((rule.sketch,))
    if isinstance(rule, VitalRatingRule):
        return frozenset(), frozenset((rule.vital,))
    if isinstance(rule, _SpikeBase):
        return frozenset((rule.counter_name,)), frozenset()
    raise TypeError(f"fields_read() does not handle {type(rule).__name__}")


# ---------------------------------------------------------------------------------------- evaluator


class RuleEvaluator:
    """Alert state of every windowed rule's series, advanced one closed window at a time."""

    def __init__(self, rules: RuleSet, state: Mapping[str, Any] | None = None, max_series: int | None = None) -> None:
        """``max_series``: the most series one rule tracks (``PULSE_ALERTS_MAX_SERIES``); a new series
        beyond it is not evaluated and counted in ``dropped[rule]``, tracked ones (firing ones
        included) go on, so every firing still gets its resolved. None: no limit."""
        self.ruleset = rules
        self.max_series = max_series
        self.dropped: dict[str, int] = {}  # rule -> new series ignored at max_series (drained by the caller)
        self._rules: dict[str, WindowedRule] = {r.name: r for r in rules.windowed}
        self._issue_rules = rules.issue_rules
        self._state: dict[str, RuleState] = {name: RuleState() for name in self._rules}
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown evaluator state version {state.get('version')!r}")
            for name, doc in state.get("rules", {}).items():
                if name in self._rules:  # state of rules no longer in the file is dropped
                    self._state[name] = RuleState.from_json(doc)

    # -- persistence

    def to_json(self) -> dict[str, Any]:
        """The whole state, JSON-serialisable; ``RuleEvaluator(rules, state=doc)`` restores it."""
        return {"version": STATE_VERSION, "rules": {n: s.to_json() for n, s in self._state.items()}}

    def series(self, rule: str) -> dict[str, SeriesState]:
        return self._state[rule].series

    def needed_from_ms(self) -> int | None:
        """The oldest aggregate time a later ``advance`` can still use (None before the first
        ``advance``): the caller may drop buffered minutes before it. After a restart the caller
        rebuilds its buffer from here (e.g. from the rollups table); the state does not hold it."""
        starts = [s.last_window_ms + self._rules[n].window_ms for n, s in self._state.items()
                  if s.last_window_ms is not None]
        return min(starts) if starts else None

    def next_window_ms(self, rule: str) -> int | None:
        """The start of the next window ``rule`` will evaluate (None before its first): aggregates of
        windows before it can no longer change its alerts."""
        state = self._state[rule]
        return None if state.last_window_ms is None else state.last_window_ms + self._rules[rule].window_ms

    # -- windowed rules

    def advance(self, closed_until_ms: int,
                aggregates: Iterable[WindowAggregate] | Mapping[str, Iterable[WindowAggregate]]
                ) -> list[AlertEvent]:
        """Evaluate every rule's windows that ended at or before ``closed_until_ms`` and were not
        evaluated yet, with ``aggregates`` (minute partials, any order) as their data, or a mapping
        rule name -> that rule's own aggregates (``AlertBuffer.for_rule``). The caller passes every
        aggregate from ``needed_from_ms()`` on; a rule's first window is the one holding the oldest
        aggregate given."""
        shared = None if isinstance(aggregates, Mapping) else list(aggregates)
        out: list[AlertEvent] = []
        for name, rule in self._rules.items():
            aggs = shared if shared is not None else list(aggregates.get(name, ()))  # type: ignore[union-attr]
            w = rule.window_ms
            last_start = closed_until_ms - closed_until_ms % w - w
            by_window: dict[int, list[WindowAggregate]] = {}
            for a in aggs:
                by_window.setdefault(a.window_start_ms - a.window_start_ms % w, []).append(a)
            state = self._state[name]
            if state.last_window_ms is None:  # the rule starts here: mark it, so needed_from_ms() holds
                state.last_window_ms = (min(by_window) if by_window else last_start) - w
            for start in range(state.last_window_ms + w, last_start + 1, w):
                out += self.evaluate(name, start, by_window.get(start, ()))
        return out

    def evaluate(self, rule_name: str, window_start_ms: int,
                 aggregates: Iterable[WindowAggregate]) -> list[AlertEvent]:
        """One closed window ``[window_start_ms, + window)`` of one rule. ``aggregates`` are any
        aggregates inside it (minute partials are merged and projected here); series with state but
        no aggregate have no data. Windows must come in order: one at or before the last evaluated
        window is a replay and returns nothing; skipped windows count as windows without data."""
        rule = self._rules[rule_name]
        w = rule.window_ms
        if window_start_ms % w:
            raise ValueError(f"window start {window_start_ms} is not aligned to {format_duration(w)}")
        state = self._state[rule_name]
        if state.last_window_ms is not None and window_start_ms <= state.last_window_ms:
            return []
        aggs = list(aggregates)
        for a in aggs:
            if not (window_start_ms <= a.window_start_ms and a.window_start_ms + a.window_ms <= window_start_ms + w):
                raise ValueError(f"aggregate of {a.window_start_ms}+{a.window_ms}ms is outside the window "
                                 f"{window_start_ms}+{w}ms of rule {rule_name!r}")
        out: list[AlertEvent] = []
        if state.last_window_ms is not None:
            gap = state.last_window_ms + w
            while gap < window_start_ms and state.series:  # windows nobody reported: no data anywhere
                out += self._step(rule, state, gap, {})
                gap += w
        if state.first_window_ms is None:
            state.first_window_ms = window_start_ms
        merged = {_series_key(a.project, a.labels): a for a in merge(aggs, w, rule.group_by)}
        out += self._step(rule, state, window_start_ms, merged)
        return out

    def _step(self, rule: WindowedRule, state: RuleState, start: int,
              merged: Mapping[str, WindowAggregate]) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for key in sorted(set(state.series) | set(merged)):
            agg = merged.get(key)
            series = state.series.get(key)
            if series is None:
                assert agg is not None
                if self.max_series is not None and len(state.series) >= self.max_series:
                    self.dropped[rule.name] = self.dropped.get(rule.name, 0) + 1
                    continue
                series = state.series[key] = SeriesState(agg.project, dict(agg.labels))
            out += self._step_series(rule, state, series, start, agg)
            if series.idle:
                del state.series[key]
        state.last_window_ms = start
        return out

    def _step_series(self, rule: WindowedRule, state: RuleState, series: SeriesState, start: int,
                     agg: WindowAggregate | None) -> list[AlertEvent]:
        w = rule.window_ms
        end = start + w
        extra: dict[str, Any] = {}
        if isinstance(rule, _SpikeBase):
            value, volume, extra = self._spike(rule, state, series, start, agg)
        else:
            value, volume = measure(rule, agg)
        eligible = value is not None and volume >= rule.min_volume
        current = series.level
        levels = rule.thresholds.levels()

        qualified: list[str] = []
        for level, threshold in levels:
            was_firing = current is not None and LEVEL_RANK[level] <= LEVEL_RANK[current]
            limit = rule.relaxed(threshold) if was_firing else threshold
            holds = eligible and rule.meets(value, limit)  # type: ignore[arg-type]
            if not holds:
                series.runs.pop(level, None)
                continue
            run_start = series.runs.setdefault(level, start)
            if was_firing or end - run_start >= rule.for_ms:
                qualified.append(level)
        target = qualified[-1] if qualified else None

        if current is not None and (target is None or LEVEL_RANK[target] < LEVEL_RANK[current]):
            if series.clear_since is None:
                series.clear_since = start
            if end - series.clear_since <= rule.keep_firing_for_ms:
                target = current  # keep firing
        else:
            series.clear_since = None
        if target == current:
            return []

        thresholds = dict(levels)
        out: list[AlertEvent] = []
        starts_at = series.starts_at
        if target is not None:
            # a downgrade starts now; a fresh firing or an escalation when its run of windows began
            downgrade = current is not None and LEVEL_RANK[target] < LEVEL_RANK[current]
            new_start = start if downgrade else series.runs.get(target, start)
            out.append(self._event(rule, series, "firing", target, new_start, None, end, start, value,
                                   thresholds[target], extra))
        if current is not None:
            out.append(self._event(rule, series, "resolved", current, starts_at or start, end, end, start, value,
                                   thresholds[current], extra))
        series.level = target
        series.starts_at = out[0].starts_at if target is not None else None
        series.clear_since = None
        return out

    def _spike(self, rule: _SpikeBase, state: RuleState, series: SeriesState, start: int,
               agg: WindowAggregate | None) -> tuple[float | None, int, dict[str, Any]]:
        w, n = rule.window_ms, rule.baseline_windows
        count = agg.counters.get(rule.counter_name, 0) if agg is not None else 0
        since = start - n * w
        mean = sum(c for s, c in series.counts if since <= s < start) / n
        if count > 0:
            series.counts.append([start, count])
        series.counts = [[s, c] for s, c in series.counts if s >= start + w - n * w]
        warm = state.first_window_ms is not None and state.first_window_ms <= since
        if agg is None or not warm:
            return None, count, {"count": count, "baseline_mean": mean}
        return count / max(mean, 1.0), count, {"count": count, "baseline_mean": mean}

    def _event(self, rule: WindowedRule | IssueRule, series: SeriesState, status: Status, level: str,
               starts_at: int, ends_at: int | None, at: int, id_part: int | str, value: float | None,
               threshold: float | None, extra: Mapping[str, Any]) -> AlertEvent:
        """``id_part``: the evaluated window's start (the transition id for issue rules)."""
        severity = rule.severity_of(level)
        labels = {"project": series.project, **series.labels, **rule.labels, "severity": severity}
        fp = fingerprint(rule.name, labels)
        context = {**labels, "labels": labels, **rule.template_fields(), **extra, "level": level,
                   "severity": severity, "value": float("nan") if value is None else value, "threshold": threshold}
        return AlertEvent(
            event_id=event_id(fp, status, id_part), fingerprint=fp, rule=rule.name, status=status,
            severity=severity, labels=labels, starts_at=starts_at, ends_at=ends_at, at=at, value=value,
            threshold=threshold, summary=render(rule.summary_template, context),
            runbook_url=render(rule.runbook_url, context) if rule.runbook_url else None,
            remediation_webhook=rule.remediation_webhook if status == "firing" else None,
            annotations={"level": level, "kind": rule.kind_name, **extra, **(
                {} if isinstance(rule, IssueRule) else
                {"window": format_duration(rule.window_ms), "window_start": id_part})})

    # -- issue rules

    def on_transition(self, transition: Mapping[str, Any]) -> list[AlertEvent]:
        """``firing`` events of the issue rules matching one issue transition (none resolve)."""
        kind = transition.get("kind")
        out: list[AlertEvent] = []
        for rule in self._issue_rules:
            if kind not in rule.transitions:
                continue
            series = SeriesState(str(transition["project"]), {"issue": str(transition["group_id"])})
            extra = {"transition": kind, "from_status": transition.get("from_status", ""),
                     "title": transition.get("title", ""), "culprit": transition.get("culprit", ""),
                     "release": transition.get("release", ""), "reason": transition.get("reason", ""),
                     "issue": str(transition["group_id"]), "events": int(transition.get("events", 0)),
                     "transition_id": transition.get("transition_id", "")}
            at = int(transition["at_ms"])
            out.append(self._event(rule, series, "firing", rule.level, at, None, at,
                                   str(transition.get("transition_id") or at), float(extra["events"]), None, extra))
        return out
