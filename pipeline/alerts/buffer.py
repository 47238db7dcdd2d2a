"""The aggregates alert rules still need, merged as they arrive. Pure.

A window closes minutes after its first partial arrives, and until then its partials must be kept.
Keeping them one per input message (the first design) grew with traffic: 8.4 MB of state after two
minutes at 1,000 events/s. Keeping them one per full label set (project, minute, environment,
release, page, browser) still grows with label cardinality times sketch size: a few dozen routes x 3
releases x 2 environments x 4 browsers is ~700 series a minute, each with up to six sketches of
hundreds of buckets, times the 15 minutes the longest default rule needs.

So each rule gets its own slots, filled when a partial arrives: one aggregate per (rule window,
project + the rule's ``group_by`` labels), holding only the counters and sketches the rule reads
(``evaluate.fields_read``). A 15-minute p75 rule grouped by nothing keeps one sketch per project and
open window, whatever the traffic. The SLOs share one slot per (minute, project + their
``group_by`` labels) with only their counters. Merging is summing, so evaluating a rule over its
slots gives exactly what evaluating it over every raw partial gives (``tests/unit/alerts/
test_buffer.py`` proves it on random input): ``RuleEvaluator.evaluate`` merges and projects again,
which changes nothing on already merged and projected aggregates.

Size: at most (windowed rules x open windows + SLO minutes) x ``max_series`` slots, each holding a
rule's few fields (a DDSketch of 0.5 % accuracy has at most a few hundred buckets for real
latencies). A series beyond ``max_series`` in one window (``PULSE_ALERTS_MAX_SERIES``) is dropped
and counted in ``dropped[rule]``; series already there keep merging.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.alerts.evaluate import WindowAggregate, fields_read
from pipeline.alerts.rules import RuleSet, format_duration

MINUTE_MS = 60_000
SLO_SLOTS = "slos"  # the name the SLOs' slots go by in ``dropped`` (rule names are theirs)
FORMAT_VERSION = 2  # 1: a list of raw partials, see ``PartitionAlerts``


@dataclass(frozen=True)
class AlertLimits:
    """Operator bounds of one partition's alert state (``PULSE_ALERTS_*``, see ``AlertSettings``).
    None: unbounded (tests of the rules themselves)."""

    max_series: int | None = None  # per rule / SLO and window
    max_projects: int | None = None  # enrichment context: projects remembered
    recent_issues: int = 20  # enrichment context: issue transitions per project


@dataclass(frozen=True)
class _Slots:
    """How one rule (or the SLOs together) keeps its aggregates."""

    window_ms: int
    group_by: tuple[str, ...]
    counters: tuple[str, ...]
    sketches: tuple[str, ...]


def _signature(how: _Slots) -> list[Any]:
    return [how.window_ms, list(how.group_by), list(how.counters), list(how.sketches)]


# window start -> (project, group label values) -> aggregate
_Windows = dict[int, dict[tuple[str, tuple[str, ...]], WindowAggregate]]


class AlertBuffer:
    """Per rule, one merged aggregate per open window and series (see the module docstring).

    Example::

        buffer = AlertBuffer(rules, max_series=1000)
        buffer.add(WindowAggregate.from_rollup_row(row))
        evaluator.advance(closed_until_ms, buffer.by_rule())
        buffer.trim({name: evaluator.next_window_ms(name) for name in buffer.rules}, slo_next_ms)
    """

    def __init__(self, rules: RuleSet, max_series: int | None = None) -> None:
        self.max_series = max_series
        self._how: dict[str, _Slots] = {}
        for rule in rules.windowed:
            counters, sketches = fields_read(rule)
            self._how[rule.name] = _Slots(rule.window_ms, tuple(rule.group_by), tuple(sorted(counters)),
                                          tuple(sorted(sketches)))
        self.rules = tuple(self._how)
        if rules.slos:
            group_by = tuple(sorted({k for slo in rules.slos for k in slo.group_by}))
            counters = tuple(sorted({c for slo in rules.slos for c in slo.counters_read()}))
            self._how[SLO_SLOTS] = _Slots(MINUTE_MS, group_by, counters, ())
        self._slots: dict[str, _Windows] = {name: {} for name in self._how}
        self.dropped: dict[str, int] = {}  # rule (or "slos") -> aggregates of series beyond max_series

    def add(self, agg: WindowAggregate) -> None:
        """Merge one aggregate (a minute partial, any labels) into every rule's slot it falls in."""
        labels = agg.labels
        for name, how in self._how.items():
            w = how.window_ms
            if agg.window_ms > w or w % agg.window_ms:
                raise ValueError(f"cannot merge {format_duration(agg.window_ms)} aggregates into "
                                 f"{format_duration(w)} windows ({name})")
            start = agg.window_start_ms - agg.window_start_ms % w
            windows = self._slots[name]
            series = windows.get(start)
            if series is None:
                series = windows[start] = {}
            values = tuple(labels.get(k, "") for k in how.group_by)
            key = (agg.project, values)
            slot = series.get(key)
            if slot is None:
                if self.max_series is not None and len(series) >= self.max_series:
                    self.dropped[name] = self.dropped.get(name, 0) + 1
                    continue
                slot = series[key] = WindowAggregate(agg.project, start, w, dict(zip(how.group_by, values)), {}, {})
            counters, sketches = slot.counters, slot.sketches
            for c in how.counters:
                n = agg.counters.get(c)
                if n:
                    counters[c] = counters.get(c, 0) + n
            for s in how.sketches:
                buckets = agg.sketches.get(s)
                if buckets:
                    target = sketches.get(s)
                    if target is None:
                        target = sketches[s] = {}
                    for b, n in buckets.items():
                        target[b] = target.get(b, 0) + n

    def for_rule(self, name: str) -> list[WindowAggregate]:
        return [a for series in self._slots[name].values() for a in series.values()]

    def by_rule(self) -> dict[str, list[WindowAggregate]]:
        """Rule name -> its aggregates, for ``RuleEvaluator.advance``."""
        return {name: self.for_rule(name) for name in self.rules}

    def slo_minutes(self) -> list[int]:
        return sorted(self._slots.get(SLO_SLOTS, {}))

    def slo_minute(self, minute_ms: int) -> list[WindowAggregate]:
        """The SLOs' aggregates of one minute, for ``SloEvaluator.evaluate``."""
        return list(self._slots.get(SLO_SLOTS, {}).get(minute_ms, {}).values())

    def trim(self, next_window_ms: Mapping[str, int | None], slo_next_ms: int | None) -> None:
        """Forget windows before the next one each rule (and the SLOs) will evaluate."""
        for name, windows in self._slots.items():
            keep_from = slo_next_ms if name == SLO_SLOTS else next_window_ms.get(name)
            if keep_from is not None:
                for start in [s for s in windows if s < keep_from]:
                    del windows[start]

    def __iter__(self) -> Iterator[WindowAggregate]:
        for windows in self._slots.values():
            for series in windows.values():
                yield from series.values()

    def __len__(self) -> int:
        return sum(len(series) for windows in self._slots.values() for series in windows.values())

    # -- persistence

    def to_json(self) -> dict[str, Any]:
        """Rule -> [[window start, project, labels, counters, sketches], ...] (dump with
        ``OPT_NON_STR_KEYS``: bucket keys are ints)."""
        return {"version": FORMAT_VERSION, "slots": {
            name: {"how": _signature(self._how[name]),
                   "slots": [[a.window_start_ms, a.project, a.labels, a.counters, a.sketches]
                             for series in windows.values() for a in series.values()]}
            for name, windows in self._slots.items() if windows}}

    @classmethod
    def from_json(cls, rules: RuleSet, doc: Mapping[str, Any], max_series: int | None = None) -> "AlertBuffer":
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown alert buffer version {doc.get('version')!r}")
        buffer = cls(rules, max_series)
        for name, stored in doc.get("slots", {}).items():
            how = buffer._how.get(name)
            if how is None or stored.get("how") != _signature(how):
                continue  # a rule no longer in the file, or changed: its windows start afresh
            windows = buffer._slots[name]
            for start, project, labels, counters, sketches in stored["slots"]:
                values = tuple(labels.get(k, "") for k in how.group_by)
                windows.setdefault(int(start), {})[(project, values)] = WindowAggregate(
                    project, int(start), how.window_ms, dict(zip(how.group_by, values)),
                    {k: int(n) for k, n in counters.items() if k in how.counters},
                    {k: {int(b): int(n) for b, n in v.items()} for k, v in sketches.items() if k in how.sketches})
        return buffer

    def add_all(self, aggregates: Iterable[WindowAggregate]) -> None:
        for agg in aggregates:
            self.add(agg)
