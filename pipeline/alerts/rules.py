"""Alert rules and SLOs as a file people edit: the model, its validation, and its loading. Pure.

Rules are data, not code, so a product team can change a threshold without a deploy, and a bad
edit must fail loudly and precisely at load time (never at 3 a.m. inside the evaluator): every
mistake is reported as ``<file>: rule '<name>' (#<n>): <field path>: <problem>``, with ``#n``
counting rules from 1 (a nameless rule is ``rule #n``). One file, YAML (``.yaml``/``.yml``) or TOML
(``.toml``), with two lists, ``rules`` and ``slos``; ``default_rules.yaml`` next to this module is
the product spec's defaults and a worked example. In YAML::

    rules:
      - name: error-rate
        kind: ratio                    # numerator / denominator of rollup counters
        numerator: errors
        denominator: pageviews
        window: 1m                     # tumbling, epoch-aligned evaluation window
        thresholds: {warning: 0.05, critical: 0.10}   # fractions (or "5%"); see `comparison`
        comparison: ">"                # default; also >=, <, <=
        for: 0s                        # must hold over windows covering this long before firing
        keep_firing_for: 2m            # keep firing through this much clear time
        hysteresis: 0.2                # firing holds while value > threshold * (1 - 0.2)
        min_volume: 20                 # fewer pageviews in the window = no verdict (condition not met)
        group_by: [environment]        # subset of environment, release, page, browser; [] = per project
        labels: {team: web}            # static labels, on every event of the rule
        severity: {warning: slack, critical: page}   # severity label per threshold (default: its name)
        summary: "{project}/{environment}: error rate {value:.1%} > {threshold:.0%}"
        runbook_url: "https://runbooks.example/{rule}"
        remediation_webhook: https://ops.example/hooks/rollback   # called once per firing (by notify)
    slos:
      - name: api-availability
        kind: availability             # good = api_calls - api_failures, total = api_calls
        objective: 0.999
        period: 30d

Durations are strings ``<n>s|m|h|d`` (``30s``, ``5m``, ``1h``, ``1d``; ``0`` is also accepted).
The same rule in TOML is a ``[[rules]]`` table (``for = "0s"``, ``[rules.thresholds]`` ...).

Kinds (each takes the common fields above, except ``issue``, which is not windowed):

* ``ratio``: ``numerator`` / ``denominator``, rollup counters (``pipeline/rollups/minute.COUNTERS``,
  plus ``rage_clicks``/``dead_clicks``); ``min_volume`` applies to the denominator. A window with a
  zero denominator has no value.
* ``percentile``: ``sketch`` (``api_latency`` or a vital) at ``quantile`` (``0.95`` or ``p95``);
  thresholds in the sketch's unit (ms; CLS is unitless); ``min_volume`` = samples in the window.
* ``issue``: ``transitions`` (any of new, regressed, escalating) of ``pipeline/issues/lifecycle``;
  fires once per transition at ``level`` (default warning); no window or thresholds.
* ``spike``: ``counter`` in the window against the average per window of the trailing ``baseline``
  (e.g. 1h = 12 windows of 5m); thresholds are factors (3 = three times the baseline). A baseline
  below 1 per window counts as 1, so a quiet series does not divide by zero; ``min_volume`` = the
  window's count.
* ``ux_spike``: a spike of ``signal`` (``rage_clicks`` or ``dead_clicks``) per page: ``group_by``
  defaults to, and must include, ``page``.
* ``vital_rating``: a ``vital``'s p75 (``quantile``) turning poor; thresholds default to
  ``warning`` at the spec's poor limit (LCP 4000, INP 500, CLS 0.25, FCP 3000, TTFB 1800, FID 300).

``summary`` and ``runbook_url`` are ``str.format`` templates; the names they may use are checked at
load time: ``rule``, ``kind``, ``value``, ``threshold``, ``level``, ``severity``, ``window``,
``labels`` and each label (``project``, the ``group_by`` labels, the static labels), plus per kind
(``numerator``/``denominator``; ``sketch``/``quantile``/``percentile``; ``counter``/``baseline``/
``count``/``baseline_mean``; ``vital``; for issues ``title``, ``culprit``, ``release``, ``reason``,
``transition``, ``from_status``, ``issue``, ``events``).

SLOs (``slos:``): ``name``, ``kind`` (``availability``: good = api_calls - api_failures of
api_calls; ``vital``: good = ``<vital>_good`` of all ratings, so "95 % of page loads have LCP <=
2.5 s" is ``{kind: vital, vital: lcp, objective: 0.95}``), ``objective``, ``period`` (30d),
``group_by``, ``labels``, ``burn_windows`` (the SRE workbook's multiwindow pairs by default; see
``pipeline/alerts/slo.py``), ``summary``, ``runbook_url``. Names are unique across rules and SLOs:
an alert's identity starts with it.
"""

from __future__ import annotations

import difflib
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.rollups.minute import COUNTERS, SKETCHES, VITAL_THRESHOLDS

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")

LEVELS: tuple[str, ...] = ("info", "warning", "critical")  # ascending
LEVEL_RANK = {level: i for i, level in enumerate(LEVELS)}
GROUP_KEYS: tuple[str, ...] = ("environment", "release", "page", "browser")
UX_COUNTERS: tuple[str, ...] = ("rage_clicks", "dead_clicks")
KNOWN_COUNTERS: tuple[str, ...] = (*COUNTERS, *UX_COUNTERS)
VITAL_NAMES: tuple[str, ...] = tuple(v.lower() for v in VITAL_THRESHOLDS)
ISSUE_TRANSITIONS: tuple[str, ...] = ("new", "regressed", "escalating")
KINDS: tuple[str, ...] = ("ratio", "percentile", "issue", "spike", "ux_spike", "vital_rating")
SLO_KINDS: tuple[str, ...] = ("availability", "vital")
# series labels and template names: static labels may not shadow them
RESERVED_LABELS = frozenset({"project", "severity", "issue", "slo", *GROUP_KEYS, "rule", "kind", "value",
                             "threshold", "level", "window", "labels"})

Level = Literal["info", "warning", "critical"]
GroupKey = Literal["environment", "release", "page", "browser"]
Comparison = Literal[">", ">=", "<", "<="]

_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_LABEL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class RuleFileError(ValueError):
    """A rule file that cannot be used; ``problems`` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------------------------------- durations


def parse_duration(value: Any) -> int:
    """``"30s"|"5m"|"1h"|"1d"`` (or ``0``) -> milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m[1]) * _UNIT_MS[m[2]]
    raise ValueError(f"invalid duration {value!r}; use e.g. 30s, 5m, 1h")


def format_duration(ms: int) -> str:
    """The shortest exact spelling: 300000 -> ``5m``, 5400000 -> ``90m``, 0 -> ``0s``."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return "0s" if ms == 0 else f"{ms / 1000:g}s"


def _duration(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        raise ValueError(f"invalid duration {value!r}; use e.g. 30s, 5m, 1h (a number needs a unit)")
    return parse_duration(value)


# milliseconds in Python, "5m" in files and in model_dump()
Duration = Annotated[int, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]


def _threshold(value: Any) -> Any:
    """``"5%"`` -> 0.05; anything else is left to the float validator."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"invalid percentage {value!r}") from None
    return value


Threshold = Annotated[float | None, BeforeValidator(_threshold)]


def _quantile(value: Any) -> Any:
    """``"p95"`` / ``"p99.9"`` -> 0.95 / 0.999."""
    if isinstance(value, str) and value.strip().lower().startswith("p"):
        try:
            return float(value.strip()[1:]) / 100
        except ValueError:
            raise ValueError(f"invalid quantile {value!r}; use e.g. 0.95 or p95") from None
    return value


Quantile = Annotated[float, BeforeValidator(_quantile), Field(gt=0, le=1)]


def _label_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _LABEL_NAME.match(key):
            raise ValueError(f"label name {key!r}: use lower-case letters, digits and _")
        if key in RESERVED_LABELS:
            raise ValueError(f"label name {key!r} is reserved (set by the evaluator)")
    return value


def _no_repeats(value: tuple[str, ...]) -> tuple[str, ...]:
    for key in value:
        if value.count(key) > 1:
            raise ValueError(f"{key!r} listed twice")
    return value


def _known(kind: str, value: str, choices: tuple[str, ...]) -> str:
    if value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(choices)}"
    raise ValueError(f"unknown {kind} {value!r}{hint}")


# ---------------------------------------------------------------------------------------- templates


def render(template: str, context: Mapping[str, Any]) -> str:
    """``template.format_map(context)``; the raw template if it cannot be rendered (a value of an
    unexpected type at run time must not stop alerting: load-time checks catch the rest)."""
    try:
        return template.format_map(dict(context))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return template


def _check_template(field: str, template: str, sample: Mapping[str, Any]) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{field}: bad template: {exc}") from None
    for name in names:
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root == "" or root.isdigit():
            raise ValueError(f"{field}: positional placeholder {{{name}}}; use a name, e.g. {{value}}")
        if root not in sample:
            raise ValueError(f"{field}: unknown placeholder {{{root}}}; known: {', '.join(sorted(sample))}")
    try:
        template.format_map(dict(sample))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{field}: bad template: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------- rules


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Thresholds(_Model):
    info: Threshold = None
    warning: Threshold = None
    critical: Threshold = None

    def levels(self) -> list[tuple[str, float]]:
        """(level, threshold) of the levels set, ascending severity."""
        return [(level, t) for level in LEVELS if (t := getattr(self, level)) is not None]


class _RuleBase(_Model):
    """Fields every rule has."""

    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {value:g}"
    DYNAMIC_FIELDS: ClassVar[dict[str, Any]] = {}

    name: str = Field(min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)
    severity: dict[Level, str] = Field(default_factory=dict)
    summary: str | None = None
    runbook_url: str | None = None
    remediation_webhook: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable():
            raise ValueError(f"name {value!r}: no surrounding spaces or control characters")
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _label_names(value)

    @field_validator("severity")
    @classmethod
    def _check_severity(cls, value: dict[str, str]) -> dict[str, str]:
        for level, label in value.items():
            if not label.strip():
                raise ValueError(f"{level}: empty severity label")
        return value

    @field_validator("remediation_webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @property
    def kind_name(self) -> str:
        return getattr(self, "kind")

    def severity_of(self, level: str) -> str:
        """The severity label a level is sent with (default: the level's name)."""
        return self.severity.get(level, level)  # type: ignore[call-overload]

    @property
    def summary_template(self) -> str:
        return self.summary if self.summary is not None else self.DEFAULT_SUMMARY

    def series_label_names(self) -> tuple[str, ...]:
        return ("project",)

    def template_fields(self) -> dict[str, Any]:
        """Names a template may use that come from the rule itself."""
        return {"rule": self.name, "kind": self.kind_name}

    def _sample_context(self) -> dict[str, Any]:
        labels = {name: "x" for name in self.series_label_names()}
        labels.update(self.labels)
        labels["severity"] = "x"
        return {**labels, "labels": labels, "value": 0.5, "threshold": 0.5, "level": "warning",
                "severity": "x", **self.template_fields(), **self.DYNAMIC_FIELDS}

    def _check_common(self) -> None:
        if len(set(self.severity.values())) != len(self.severity):
            raise ValueError("severity: two levels map to the same severity label; their alerts would collide")
        sample = self._sample_context()
        _check_template("summary", self.summary_template, sample)
        if self.runbook_url is not None:
            _check_template("runbook_url", self.runbook_url, sample)


class _WindowedRule(_RuleBase):
    """Rules evaluated on closed windows of rollup aggregates."""

    window_ms: Duration = Field(60_000, alias="window")
    thresholds: Thresholds
    comparison: Comparison = ">"
    for_ms: Duration = Field(0, alias="for")
    keep_firing_for_ms: Duration = Field(0, alias="keep_firing_for")
    hysteresis: float = Field(0.0, ge=0, lt=1)
    min_volume: int = Field(0, ge=0)
    group_by: tuple[GroupKey, ...] = ()

    @field_validator("window_ms")
    @classmethod
    def _check_window(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("the window must be at least 1s")
        return value

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_repeats(value)

    @model_validator(mode="after")
    def _check_rule(self) -> "_WindowedRule":
        levels = self.thresholds.levels()
        if not levels:
            raise ValueError(f"thresholds: set at least one of {', '.join(LEVELS)}")
        above = self.comparison in (">", ">=")
        for (lo, t_lo), (hi, t_hi) in zip(levels, levels[1:]):
            if above and not t_hi > t_lo:
                raise ValueError(f"thresholds: {hi} ({t_hi:g}) must be above {lo} ({t_lo:g}) "
                                 f"for comparison {self.comparison!r}")
            if not above and not t_hi < t_lo:
                raise ValueError(f"thresholds: {hi} ({t_hi:g}) must be below {lo} ({t_lo:g}) "
                                 f"for comparison {self.comparison!r}")
        self._check_kind()
        self._check_common()
        return self

    def _check_kind(self) -> None:
        pass

    def series_label_names(self) -> tuple[str, ...]:
        return ("project", *self.group_by)

    def template_fields(self) -> dict[str, Any]:
        return {**super().template_fields(), "window": format_duration(self.window_ms)}

    def relaxed(self, threshold: float) -> float:
        """The threshold a firing level must keep meeting: ``hysteresis`` towards resolution."""
        if self.comparison in (">", ">="):
            return threshold * (1 - self.hysteresis)
        return threshold * (1 + self.hysteresis)

    def meets(self, value: float, threshold: float) -> bool:
        if self.comparison == ">":
            return value > threshold
        if self.comparison == ">=":
            return value >= threshold
        if self.comparison == "<":
            return value < threshold
        return value <= threshold


class RatioRule(_WindowedRule):
    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {numerator}/{denominator} = {value:.2%} over {window} " \
                                     "(threshold {threshold:.2%})"

    kind: Literal["ratio"]
    numerator: str
    denominator: str

    @field_validator("numerator", "denominator")
    @classmethod
    def _check_counter(cls, value: str) -> str:
        return _known("counter", value, KNOWN_COUNTERS)

    def _check_kind(self) -> None:
        if self.numerator == self.denominator:
            raise ValueError("denominator: same counter as the numerator")

    def template_fields(self) -> dict[str, Any]:
        return {**super().template_fields(), "numerator": self.numerator, "denominator": self.denominator}


class PercentileRule(_WindowedRule):
    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {sketch} {percentile} = {value:.6g} over {window} " \
                                     "(threshold {threshold:g})"

    kind: Literal["percentile"]
    sketch: str
    quantile: Quantile

    @field_validator("sketch")
    @classmethod
    def _check_sketch(cls, value: str) -> str:
        return _known("sketch", value, SKETCHES)

    def template_fields(self) -> dict[str, Any]:
        return {**super().template_fields(), "sketch": self.sketch, "quantile": self.quantile,
                "percentile": f"p{self.quantile * 100:g}"}


class _SpikeBase(_WindowedRule):
    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {count} {counter} in {window}, {value:.1f}x the average of " \
                                     "the trailing {baseline} ({baseline_mean:.1f} per {window})"
    DYNAMIC_FIELDS: ClassVar[dict[str, Any]] = {"count": 1, "baseline_mean": 0.5}
    MAX_BASELINE_WINDOWS: ClassVar[int] = 1440  # bounds the ring kept per series

    baseline_ms: Duration = Field(alias="baseline")

    @property
    def counter_name(self) -> str:
        raise NotImplementedError

    @property
    def baseline_windows(self) -> int:
        return self.baseline_ms // self.window_ms

    def _check_kind(self) -> None:
        if self.baseline_ms < self.window_ms or self.baseline_ms % self.window_ms:
            raise ValueError(f"baseline: must be a whole number of windows ({format_duration(self.window_ms)}), "
                             f"got {format_duration(self.baseline_ms)}")
        if self.baseline_windows > self.MAX_BASELINE_WINDOWS:
            raise ValueError(f"baseline: at most {self.MAX_BASELINE_WINDOWS} windows, got {self.baseline_windows}")

    def template_fields(self) -> dict[str, Any]:
        return {**super().template_fields(), "counter": self.counter_name,
                "baseline": format_duration(self.baseline_ms)}


class SpikeRule(_SpikeBase):
    kind: Literal["spike"]
    counter: str

    @field_validator("counter")
    @classmethod
    def _check_counter(cls, value: str) -> str:
        return _known("counter", value, KNOWN_COUNTERS)

    @property
    def counter_name(self) -> str:
        return self.counter


class UxSpikeRule(_SpikeBase):
    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {count} {counter} on {page} in {window}, {value:.1f}x the " \
                                     "average of the trailing {baseline}"

    kind: Literal["ux_spike"]
    signal: Literal["rage_clicks", "dead_clicks"]
    group_by: tuple[GroupKey, ...] = ("page",)

    def _check_kind(self) -> None:
        if "page" not in self.group_by:
            raise ValueError("group_by: must include page (a UX spike is per page)")
        super()._check_kind()

    @property
    def counter_name(self) -> str:
        return self.signal


class VitalRatingRule(_WindowedRule):
    DEFAULT_SUMMARY: ClassVar[str] = "{rule}: {vital} {percentile} = {value:.4g} over {window}, poor above " \
                                     "{threshold:g}"

    kind: Literal["vital_rating"]
    vital: str
    quantile: Quantile = 0.75

    @model_validator(mode="before")
    @classmethod
    def _default_thresholds(cls, data: Any) -> Any:
        if isinstance(data, dict) and "thresholds" not in data and isinstance(data.get("vital"), str):
            limits = VITAL_THRESHOLDS.get(data["vital"].upper())
            if limits is not None:
                data = {**data, "thresholds": {"warning": limits[1]}}
        return data

    @field_validator("vital")
    @classmethod
    def _check_vital(cls, value: str) -> str:
        return _known("vital", value.lower(), VITAL_NAMES)

    def template_fields(self) -> dict[str, Any]:
        return {**super().template_fields(), "vital": self.vital.upper(), "quantile": self.quantile,
                "percentile": f"p{self.quantile * 100:g}"}


class IssueRule(_RuleBase):
    DEFAULT_SUMMARY: ClassVar[str] = "{transition} issue in {project}: {title}"
    DYNAMIC_FIELDS: ClassVar[dict[str, Any]] = {
        "title": "x", "culprit": "x", "release": "x", "reason": "x", "transition": "new", "from_status": "x",
        "issue": "x", "events": 1}

    kind: Literal["issue"]
    transitions: tuple[Literal["new", "regressed", "escalating"], ...]
    level: Level = "warning"

    @field_validator("transitions")
    @classmethod
    def _check_transitions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"list at least one of {', '.join(ISSUE_TRANSITIONS)}")
        return _no_repeats(value)

    @model_validator(mode="after")
    def _check_rule(self) -> "IssueRule":
        self._check_common()
        return self

    def series_label_names(self) -> tuple[str, ...]:
        return ("project", "issue")


WindowedRule = RatioRule | PercentileRule | SpikeRule | UxSpikeRule | VitalRatingRule
Rule = Annotated[Union[RatioRule, PercentileRule, IssueRule, SpikeRule, UxSpikeRule, VitalRatingRule],
                 Field(discriminator="kind")]
_RULE_CLASSES: dict[str, type[_RuleBase]] = {
    "ratio": RatioRule, "percentile": PercentileRule, "issue": IssueRule, "spike": SpikeRule,
    "ux_spike": UxSpikeRule, "vital_rating": VitalRatingRule}


# ---------------------------------------------------------------------------------------- SLOs


class BurnWindow(_Model):
    """One multiwindow condition: burn rate above ``burn_rate`` over both ``long`` and ``short``."""

    severity: str = Field(min_length=1)
    long_ms: Duration = Field(alias="long")
    short_ms: Duration = Field(alias="short")
    burn_rate: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> "BurnWindow":
        if not 0 < self.short_ms < self.long_ms:
            raise ValueError(f"short ({format_duration(self.short_ms)}) must be shorter than long "
                             f"({format_duration(self.long_ms)})")
        if self.long_ms % 60_000 or self.short_ms % 60_000:
            raise ValueError("long and short must be whole minutes")
        return self

    @property
    def name(self) -> str:
        return f"{format_duration(self.long_ms)}/{format_duration(self.short_ms)}"


# The SRE workbook's recommendation for a 30-day objective (chapter "Alerting on SLOs", table 5-8):
# 2 % of the budget in 1 h or 5 % in 6 h pages; 10 % in 3 d opens a ticket.
DEFAULT_BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(severity="page", long="1h", short="5m", burn_rate=14.4),
    BurnWindow(severity="page", long="6h", short="30m", burn_rate=6),
    BurnWindow(severity="ticket", long="3d", short="6h", burn_rate=1),
)


class Slo(_Model):
    DEFAULT_SUMMARY: ClassVar[str] = "{slo}: burning the error budget {value:.1f}x over {windows} " \
                                     "({budget_remaining:.0%} of the {period} budget left)"

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["availability", "vital"]
    objective: float = Field(gt=0, lt=1)
    vital: str | None = None
    period_ms: Duration = Field(30 * 86_400_000, alias="period")
    group_by: tuple[GroupKey, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    burn_windows: tuple[BurnWindow, ...] = DEFAULT_BURN_WINDOWS
    summary: str | None = None
    runbook_url: str | None = None

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _label_names(value)

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_repeats(value)

    @field_validator("vital")
    @classmethod
    def _check_vital(cls, value: str | None) -> str | None:
        return None if value is None else _known("vital", value.lower(), VITAL_NAMES)

    @field_validator("burn_windows")
    @classmethod
    def _check_burn_windows(cls, value: tuple[BurnWindow, ...]) -> tuple[BurnWindow, ...]:
        if not value:
            raise ValueError("list at least one burn window (or leave it out for the SRE workbook's)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "Slo":
        if self.kind == "vital" and self.vital is None:
            raise ValueError(f"vital: required for a vital SLO (one of {', '.join(VITAL_NAMES)})")
        if self.kind == "availability" and self.vital is not None:
            raise ValueError("vital: only for kind vital")
        if self.period_ms < 86_400_000 or self.period_ms % 86_400_000:
            raise ValueError("period: whole days, at least 1d")
        for i, w in enumerate(self.burn_windows):
            if w.long_ms > self.period_ms:
                raise ValueError(f"burn_windows.{i}: long window {format_duration(w.long_ms)} exceeds the period")
        sample = {"slo": self.name, "rule": self.name, "value": 0.5, "threshold": 0.5, "severity": "x",
                  "windows": "1h/5m", "budget_remaining": 0.5, "objective": self.objective,
                  "period": format_duration(self.period_ms), "project": "x", **{k: "x" for k in self.group_by},
                  **self.labels}
        sample["labels"] = dict(sample)
        _check_template("summary", self.summary_template, sample)
        if self.runbook_url is not None:
            _check_template("runbook_url", self.runbook_url, sample)
        return self

    @property
    def summary_template(self) -> str:
        return self.summary if self.summary is not None else self.DEFAULT_SUMMARY

    def counters_read(self) -> tuple[str, ...]:
        """The counters ``counts`` reads (a buffer may leave every other one out)."""
        if self.kind == "availability":
            return ("api_calls", "api_failures")
        return tuple(f"{self.vital}_{r}" for r in ("good", "ni", "poor"))

    def counts(self, counters: Mapping[str, int]) -> tuple[int, int]:
        """(good, total) of one aggregate's counters."""
        if self.kind == "availability":
            total = int(counters.get("api_calls", 0))
            return max(total - int(counters.get("api_failures", 0)), 0), total
        v = self.vital
        good = int(counters.get(f"{v}_good", 0))
        return good, good + int(counters.get(f"{v}_ni", 0)) + int(counters.get(f"{v}_poor", 0))


# ---------------------------------------------------------------------------------------- rule set


class RuleSet(_Model):
    rules: tuple[Rule, ...] = ()
    slos: tuple[Slo, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> "RuleSet":
        seen: set[str] = set()
        for item in (*self.rules, *self.slos):
            if item.name in seen:
                raise ValueError(f"duplicate name {item.name!r}")
            seen.add(item.name)
        return self

    def rule(self, name: str) -> Any:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def windowed(self) -> list[WindowedRule]:
        return [r for r in self.rules if not isinstance(r, IssueRule)]

    @property
    def issue_rules(self) -> list[IssueRule]:
        return [r for r in self.rules if isinstance(r, IssueRule)]


def _describe(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg = err["type"], str(err["msg"])
    if kind == "missing":
        msg = "required"
    elif kind == "extra_forbidden":
        msg = "unknown field"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif kind not in ("model_type", "dict_type"):
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{loc}: {msg}" if loc else msg


def _who(what: str, item: Any, index: int) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{what} {name!r} (#{index + 1})" if isinstance(name, str) and name else f"{what} #{index + 1}"


def parse_rules(doc: Any, source: str = "<rules>") -> RuleSet:
    """A ``RuleSet`` from a parsed file; ``RuleFileError`` listing every mistake otherwise."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RuleFileError([f"{source}: expected a mapping with 'rules' and 'slos', got {type(doc).__name__}"])
    problems = [f"{source}: unknown top-level key {key!r}; expected 'rules' and/or 'slos'"
                for key in doc if key not in ("rules", "slos")]
    parsed: dict[str, list[Any]] = {"rules": [], "slos": []}
    for section, what in (("rules", "rule"), ("slos", "slo")):
        items = doc.get(section) or []
        if not isinstance(items, list):
            problems.append(f"{source}: {section}: expected a list, got {type(items).__name__}")
            continue
        names: dict[str, int] = {}
        for i, item in enumerate(items):
            who = f"{source}: {_who(what, item, i)}"
            if not isinstance(item, dict):
                problems.append(f"{who}: expected a mapping, got {type(item).__name__}")
                continue
            if section == "rules":
                kind = item.get("kind")
                if kind is None:
                    problems.append(f"{who}: kind: required; one of {', '.join(KINDS)}")
                    continue
                if kind not in _RULE_CLASSES:
                    problems.append(f"{who}: kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
                    continue
                model: type[BaseModel] = _RULE_CLASSES[kind]
            else:
                model = Slo
            try:
                parsed[section].append(model.model_validate(item))
            except ValidationError as exc:
                problems.extend(f"{who}: {_describe(e)}" for e in exc.errors())
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                if name in names:
                    problems.append(f"{source}: {_who(what, item, i)}: name: duplicate name {name!r} "
                                    f"(also {what} #{names[name] + 1})")
                else:
                    names[name] = i
    rule_names = {r.name for r in parsed["rules"]}
    for i, slo in enumerate(parsed["slos"]):
        if slo.name in rule_names:
            problems.append(f"{source}: slo {slo.name!r}: name: also the name of a rule; names are unique")
    if problems:
        raise RuleFileError(problems)
    return RuleSet(rules=tuple(parsed["rules"]), slos=tuple(parsed["slos"]))


def load_rules(path: str | Path) -> RuleSet:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) rule file."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise RuleFileError([f"{source}: unknown rule file type {suffix or '(none)'!r}; use .yaml, .yml or .toml"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError([f"{source}: cannot read: {exc}"]) from None
    if suffix == ".toml":
        try:
            doc: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleFileError([f"{source}: not valid TOML: {exc}"]) from None
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise RuleFileError([f"{source}: not valid YAML{at}: {problem}"]) from None
    return parse_rules(doc, source)


def load_default_rules() -> RuleSet:
    """The product spec's defaults (``default_rules.yaml``)."""
    return load_rules(DEFAULT_RULES_PATH)
