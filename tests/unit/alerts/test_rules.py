"""Rule files (pipeline/alerts/rules.py): YAML and TOML, the shipped defaults, and error messages
that name the file, the rule and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.alerts.rules import (
    DEFAULT_BURN_WINDOWS,
    DEFAULT_RULES_PATH,
    IssueRule,
    PercentileRule,
    RatioRule,
    RuleFileError,
    SpikeRule,
    UxSpikeRule,
    VitalRatingRule,
    format_duration,
    load_default_rules,
    load_rules,
    parse_duration,
    parse_rules,
)

YAML = """\
rules:
  - name: error-rate
    kind: ratio
    numerator: errors
    denominator: pageviews
    window: 1m
    thresholds: {warning: 0.05, critical: "10%"}
    for: 2m
    keep_firing_for: 1m
    hysteresis: 0.2
    min_volume: 20
    group_by: [environment, page]
    labels: {team: web, service: shop-frontend}
    severity: {critical: page}
    summary: "{project}/{environment}{page}: {value:.1%}"
    runbook_url: "https://runbooks.example/{rule}?env={environment}"
    remediation_webhook: https://ops.example/hooks/rollback
  - name: api-latency
    kind: percentile
    sketch: api_latency
    quantile: p95
    window: 5m
    thresholds: {warning: 3000, critical: 5000}
slos:
  - name: api-availability
    kind: availability
    objective: 0.999
"""

TOML = """\
[[rules]]
name = "error-rate"
kind = "ratio"
numerator = "errors"
denominator = "pageviews"
window = "1m"
for = "2m"
keep_firing_for = "1m"
hysteresis = 0.2
min_volume = 20
group_by = ["environment", "page"]
summary = "{project}/{environment}{page}: {value:.1%}"
runbook_url = "https://runbooks.example/{rule}?env={environment}"
remediation_webhook = "https://ops.example/hooks/rollback"
thresholds = { warning = 0.05, critical = 0.10 }
labels = { team = "web", service = "shop-frontend" }
severity = { critical = "page" }

[[rules]]
name = "api-latency"
kind = "percentile"
sketch = "api_latency"
quantile = 0.95
window = "5m"

[rules.thresholds]
warning = 3000
critical = 5000

[[slos]]
name = "api-availability"
kind = "availability"
objective = 0.999
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(doc: Any) -> list[str]:
    with pytest.raises(RuleFileError) as exc:
        parse_rules(doc, "rules.yaml")
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


def ratio(**kw: Any) -> dict[str, Any]:
    return {"name": "error-rate", "kind": "ratio", "numerator": "errors", "denominator": "pageviews",
            "thresholds": {"warning": 0.05, "critical": 0.1}, **kw}


# ---------------------------------------------------------------------------------------- loading


def test_yaml_file_loads_with_every_field(tmp_path: Path) -> None:
    rs = load_rules(write(tmp_path, "rules.yaml", YAML))
    rule = rs.rule("error-rate")
    assert isinstance(rule, RatioRule)
    assert (rule.window_ms, rule.for_ms, rule.keep_firing_for_ms) == (60_000, 120_000, 60_000)
    assert (rule.thresholds.warning, rule.thresholds.critical, rule.thresholds.info) == (0.05, 0.10, None)
    assert rule.comparison == ">" and rule.hysteresis == 0.2 and rule.min_volume == 20
    assert rule.group_by == ("environment", "page")
    assert rule.labels == {"team": "web", "service": "shop-frontend"}
    assert rule.severity_of("critical") == "page" and rule.severity_of("warning") == "warning"
    assert rule.remediation_webhook == "https://ops.example/hooks/rollback"
    latency = rs.rule("api-latency")
    assert isinstance(latency, PercentileRule) and latency.quantile == 0.95 and latency.window_ms == 300_000
    assert [s.name for s in rs.slos] == ["api-availability"] and rs.slos[0].period_ms == 30 * 86_400_000
    assert rs.slos[0].burn_windows == DEFAULT_BURN_WINDOWS


def test_toml_file_gives_the_same_rule_set(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "rules.toml", TOML)) == load_rules(write(tmp_path, "rules.yml", YAML))


def test_defaults_for_optional_fields() -> None:
    rule = parse_rules({"rules": [ratio()]}).rules[0]
    assert (rule.window_ms, rule.for_ms, rule.keep_firing_for_ms) == (60_000, 0, 0)
    assert (rule.hysteresis, rule.min_volume) == (0, 0)
    assert rule.group_by == () and rule.labels == {} and rule.comparison == ">"
    assert rule.summary_template == RatioRule.DEFAULT_SUMMARY and rule.runbook_url is None


def test_the_shipped_defaults_load_and_hold_the_product_spec() -> None:
    rs = load_default_rules()
    assert DEFAULT_RULES_PATH.name == "default_rules.yaml"
    err = rs.rule("error-rate")
    assert isinstance(err, RatioRule) and (err.numerator, err.denominator) == ("errors", "pageviews")
    assert (err.thresholds.warning, err.thresholds.critical, err.window_ms) == (0.05, 0.10, 60_000)
    api = rs.rule("api-latency")
    assert isinstance(api, PercentileRule) and (api.sketch, api.quantile) == ("api_latency", 0.95)
    assert (api.thresholds.warning, api.thresholds.critical) == (3000, 5000)
    checkout = rs.rule("checkout-failure-rate")
    assert isinstance(checkout, RatioRule) and checkout.numerator == "checkout_failures"
    assert checkout.denominator == "checkout_calls" and checkout.window_ms == 300_000
    assert checkout.thresholds.levels() == [("critical", 0.10)]
    issue_rules = {r.name: r.transitions for r in rs.issue_rules}
    assert issue_rules == {"new-issue": ("new",), "regressed-issue": ("regressed",)}
    assert isinstance(rs.rule("error-spike"), SpikeRule) and rs.rule("error-spike").counter == "errors"
    rage = rs.rule("rage-click-spike")
    assert isinstance(rage, UxSpikeRule) and rage.signal == "rage_clicks" and "page" in rage.group_by
    poor = {r.vital: r.thresholds.warning for r in rs.rules if isinstance(r, VitalRatingRule)}
    assert poor == {"lcp": 4000, "inp": 500, "cls": 0.25, "fcp": 3000, "ttfb": 1800}
    assert all(r.quantile == 0.75 for r in rs.rules if isinstance(r, VitalRatingRule))
    slos = {s.name: s for s in rs.slos}
    assert (slos["api-availability"].kind, slos["api-availability"].objective) == ("availability", 0.999)
    assert (slos["lcp-good"].kind, slos["lcp-good"].vital, slos["lcp-good"].objective) == ("vital", "lcp", 0.95)


def test_vital_rating_thresholds_default_to_the_poor_limit() -> None:
    rs = parse_rules({"rules": [{"name": "inp", "kind": "vital_rating", "vital": "INP"}]})
    rule = rs.rules[0]
    assert rule.vital == "inp" and rule.thresholds.levels() == [("warning", 500.0)] and rule.quantile == 0.75


def test_empty_file_is_an_empty_rule_set(tmp_path: Path) -> None:
    rs = load_rules(write(tmp_path, "rules.yaml", ""))
    assert rs.rules == () and rs.slos == ()


@pytest.mark.parametrize("text,ms", [("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
                                     ("0s", 0), (0, 0), (" 2h ", 7_200_000)])
def test_durations(text: Any, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["5x", "5", "m", "1.5h", "-1m", "", None, True])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_durations_print_back_in_the_largest_exact_unit() -> None:
    assert [format_duration(ms) for ms in (0, 30_000, 300_000, 5_400_000, 86_400_000)] == [
        "0s", "30s", "5m", "90m", "1d"]


def test_model_dump_round_trips_through_the_file_form() -> None:
    rs = parse_rules({"rules": [ratio(window="5m", **{"for": "10m"})]})
    dumped = rs.rules[0].model_dump(by_alias=True)
    assert dumped["window"] == "5m" and dumped["for"] == "10m"
    assert parse_rules({"rules": [dumped]}) == rs


# ---------------------------------------------------------------------------------------- mistakes


def test_bad_duration_names_file_rule_and_field(tmp_path: Path) -> None:
    text = YAML.replace("    window: 5m\n", "    window: 5m\n    for: 5x\n")
    path = write(tmp_path, "rules.yaml", text)
    with pytest.raises(RuleFileError) as exc:
        load_rules(path)
    assert str(exc.value) == f"{path}: rule 'api-latency' (#2): for: invalid duration '5x'; use e.g. 30s, 5m, 1h"


def test_a_number_without_unit_is_not_a_duration() -> None:
    assert problems({"rules": [ratio(window=5)]}) == [
        "rules.yaml: rule 'error-rate' (#1): window: invalid duration 5; use e.g. 30s, 5m, 1h (a number needs a unit)"]


def test_toml_mistakes_name_the_rule_too(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.toml", TOML.replace('window = "5m"', 'window = "5 minutes"'))
    with pytest.raises(RuleFileError, match=r"rules\.toml: rule 'api-latency' \(#2\): window: invalid duration "
                                            r"'5 minutes'"):
        load_rules(path)


def test_missing_field() -> None:
    doc = ratio()
    del doc["numerator"]
    assert problems({"rules": [doc]}) == ["rules.yaml: rule 'error-rate' (#1): numerator: required"]


def test_misspelt_field_is_unknown_and_the_real_one_missing() -> None:
    doc = ratio(treshold={"warning": 1})
    del doc["thresholds"]
    assert problems({"rules": [doc]}) == ["rules.yaml: rule 'error-rate' (#1): thresholds: required",
                                          "rules.yaml: rule 'error-rate' (#1): treshold: unknown field"]


def test_a_field_of_another_kind_is_unknown() -> None:
    assert problems({"rules": [ratio(sketch="api_latency")]}) == [
        "rules.yaml: rule 'error-rate' (#1): sketch: unknown field"]


def test_nameless_rule_is_named_by_its_position() -> None:
    doc = ratio()
    del doc["name"]
    assert problems({"rules": [ratio(name="a"), ratio(name="b"), doc]}) == ["rules.yaml: rule #3: name: required"]


def test_unknown_and_missing_kind() -> None:
    assert problems({"rules": [ratio(kind="rate"), {"name": "x"}]}) == [
        "rules.yaml: rule 'error-rate' (#1): kind: unknown kind 'rate'; expected one of ratio, percentile, issue, "
        "spike, ux_spike, vital_rating",
        "rules.yaml: rule 'x' (#2): kind: required; one of ratio, percentile, issue, spike, ux_spike, vital_rating"]


def test_unknown_counter_suggests_the_closest() -> None:
    assert problems({"rules": [ratio(numerator="erors")]}) == [
        "rules.yaml: rule 'error-rate' (#1): numerator: unknown counter 'erors'; did you mean 'errors'?"]


def test_unknown_sketch_lists_the_choices() -> None:
    msg = problems({"rules": [{"name": "p", "kind": "percentile", "sketch": "zzz", "quantile": 0.5,
                               "thresholds": {"warning": 1}}]})
    assert msg == ["rules.yaml: rule 'p' (#1): sketch: unknown sketch 'zzz'; expected one of api_latency, lcp, inp, "
                   "cls, fcp, ttfb, fid"]


def test_thresholds_out_of_order() -> None:
    assert problems({"rules": [ratio(thresholds={"warning": 0.1, "critical": 0.05})]}) == [
        "rules.yaml: rule 'error-rate' (#1): thresholds: critical (0.05) must be above warning (0.1) "
        "for comparison '>'"]
    assert problems({"rules": [ratio(comparison="<", thresholds={"warning": 0.1, "critical": 0.5})]}) == [
        "rules.yaml: rule 'error-rate' (#1): thresholds: critical (0.5) must be below warning (0.1) for comparison '<'"]


def test_thresholds_need_one_level_and_numbers() -> None:
    assert problems({"rules": [ratio(thresholds={})]}) == [
        "rules.yaml: rule 'error-rate' (#1): thresholds: set at least one of info, warning, critical"]
    assert problems({"rules": [ratio(thresholds={"warning": "high"})]}) == [
        "rules.yaml: rule 'error-rate' (#1): thresholds.warning: Input should be a valid number, unable to parse "
        "string as a number, got 'high'"]
    assert problems({"rules": [ratio(thresholds={"urgent": 1})]}) == [
        "rules.yaml: rule 'error-rate' (#1): thresholds.urgent: unknown field"]


def test_bad_group_by_key_names_the_position() -> None:
    assert problems({"rules": [ratio(group_by=["environment", "country"])]}) == [
        "rules.yaml: rule 'error-rate' (#1): group_by.1: Input should be 'environment', 'release', 'page' or "
        "'browser', got 'country'"]
    assert problems({"rules": [ratio(group_by=["page", "page"])]}) == [
        "rules.yaml: rule 'error-rate' (#1): group_by: 'page' listed twice"]


def test_ranges() -> None:
    assert problems({"rules": [ratio(hysteresis=1.5, min_volume=-1)]}) == [
        "rules.yaml: rule 'error-rate' (#1): hysteresis: Input should be less than 1, got 1.5",
        "rules.yaml: rule 'error-rate' (#1): min_volume: Input should be greater than or equal to 0, got -1"]


def test_duplicate_names() -> None:
    assert problems({"rules": [ratio(name="a"), ratio(name="b"), ratio(name="a")]}) == [
        "rules.yaml: rule 'a' (#3): name: duplicate name 'a' (also rule #1)"]
    assert problems({"rules": [ratio(name="a")], "slos": [{"name": "a", "kind": "availability",
                                                           "objective": 0.99}]}) == [
        "rules.yaml: slo 'a': name: also the name of a rule; names are unique"]


def test_templates_are_checked_against_the_names_they_may_use() -> None:
    assert problems({"rules": [ratio(summary="{value:.1%} on {page}")]}) == [
        "rules.yaml: rule 'error-rate' (#1): summary: unknown placeholder {page}; known: denominator, kind, labels, "
        "level, numerator, project, rule, severity, threshold, value, window"]
    # page becomes known once the rule groups by it; static labels are known too
    parse_rules({"rules": [ratio(summary="{value:.1%} on {page} ({team}) {labels[page]}", group_by=["page"],
                                 labels={"team": "web"})]})
    assert problems({"rules": [ratio(runbook_url="https://x/{0}")]}) == [
        "rules.yaml: rule 'error-rate' (#1): runbook_url: positional placeholder {0}; use a name, e.g. {value}"]
    assert problems({"rules": [ratio(summary="{value:%Q}")]})[0].startswith(
        "rules.yaml: rule 'error-rate' (#1): summary: bad template: ValueError")


def test_labels_and_severity_and_webhook() -> None:
    assert problems({"rules": [ratio(labels={"project": "x"})]}) == [
        "rules.yaml: rule 'error-rate' (#1): labels: label name 'project' is reserved (set by the evaluator)"]
    assert problems({"rules": [ratio(labels={"Team": "x"})]}) == [
        "rules.yaml: rule 'error-rate' (#1): labels: label name 'Team': use lower-case letters, digits and _"]
    assert problems({"rules": [ratio(severity={"warning": "page", "critical": "page"})]}) == [
        "rules.yaml: rule 'error-rate' (#1): severity: two levels map to the same severity label; their alerts "
        "would collide"]
    assert problems({"rules": [ratio(remediation_webhook="ftp://x")]}) == [
        "rules.yaml: rule 'error-rate' (#1): remediation_webhook: expected an http:// or https:// URL, got 'ftp://x'"]


def test_spike_baseline_must_be_whole_windows() -> None:
    spike = {"name": "s", "kind": "spike", "counter": "errors", "window": "5m", "baseline": "7m",
             "thresholds": {"warning": 3}}
    assert problems({"rules": [spike]}) == [
        "rules.yaml: rule 's' (#1): baseline: must be a whole number of windows (5m), got 7m"]
    assert problems({"rules": [{**spike, "baseline": "10d", "window": "1m"}]}) == [
        "rules.yaml: rule 's' (#1): baseline: at most 1440 windows, got 14400"]
    rule = parse_rules({"rules": [{**spike, "baseline": "1h"}]}).rules[0]
    assert rule.baseline_windows == 12


def test_ux_spike_is_per_page() -> None:
    ux = {"name": "rage", "kind": "ux_spike", "signal": "rage_clicks", "window": "5m", "baseline": "1h",
          "thresholds": {"warning": 3}}
    assert parse_rules({"rules": [ux]}).rules[0].group_by == ("page",)
    assert problems({"rules": [{**ux, "group_by": ["environment"]}]}) == [
        "rules.yaml: rule 'rage' (#1): group_by: must include page (a UX spike is per page)"]
    assert problems({"rules": [{**ux, "signal": "clicks"}]}) == [
        "rules.yaml: rule 'rage' (#1): signal: Input should be 'rage_clicks' or 'dead_clicks', got 'clicks'"]


def test_issue_rules() -> None:
    rule = parse_rules({"rules": [{"name": "i", "kind": "issue", "transitions": ["new", "regressed"]}]}).rules[0]
    assert isinstance(rule, IssueRule) and rule.level == "warning" and rule.transitions == ("new", "regressed")
    assert problems({"rules": [{"name": "i", "kind": "issue", "transitions": ["resolved"]}]}) == [
        "rules.yaml: rule 'i' (#1): transitions.0: Input should be 'new', 'regressed' or 'escalating', got 'resolved'"]
    assert problems({"rules": [{"name": "i", "kind": "issue", "transitions": ["new"], "window": "1m"}]}) == [
        "rules.yaml: rule 'i' (#1): window: unknown field"]
    assert problems({"rules": [{"name": "i", "kind": "issue", "transitions": ["new"], "summary": "{value:.1%"}]})[0] \
        .startswith("rules.yaml: rule 'i' (#1): summary: bad template")


def test_slo_mistakes() -> None:
    assert problems({"slos": [{"name": "lcp", "kind": "vital", "objective": 0.95}]}) == [
        "rules.yaml: slo 'lcp' (#1): vital: required for a vital SLO (one of lcp, inp, cls, fcp, ttfb, fid)"]
    assert problems({"slos": [{"name": "a", "kind": "availability", "objective": 99.9}]}) == [
        "rules.yaml: slo 'a' (#1): objective: Input should be less than 1, got 99.9"]
    assert problems({"slos": [{"name": "a", "kind": "availability", "objective": 0.99, "period": "7d",
                               "burn_windows": [{"severity": "page", "long": "8d", "short": "1h",
                                                 "burn_rate": 2}]}]}) == [
        "rules.yaml: slo 'a' (#1): burn_windows.0: long window 8d exceeds the period"]
    assert problems({"slos": [{"name": "a", "kind": "availability", "objective": 0.99,
                               "burn_windows": [{"severity": "page", "long": "5m", "short": "1h",
                                                 "burn_rate": 2}]}]}) == [
        "rules.yaml: slo 'a' (#1): burn_windows.0: short (1h) must be shorter than long (5m)"]


def test_every_mistake_is_reported_at_once() -> None:
    msgs = problems({"rules": [ratio(name="a", window="x"), ratio(name="b", numerator="nope"), "oops"],
                     "slo": []})
    assert msgs == [
        "rules.yaml: unknown top-level key 'slo'; expected 'rules' and/or 'slos'",
        "rules.yaml: rule 'a' (#1): window: invalid duration 'x'; use e.g. 30s, 5m, 1h",
        "rules.yaml: rule 'b' (#2): numerator: unknown counter 'nope'; expected one of " + msgs[2].split("one of ")[1],
        "rules.yaml: rule #3: expected a mapping, got str"]


def test_file_level_mistakes(tmp_path: Path) -> None:
    bad_yaml = write(tmp_path, "rules.yaml", "rules:\n  - name: a\n    kind: [ratio\n")
    with pytest.raises(RuleFileError, match=r"rules\.yaml: not valid YAML \(line \d+, column \d+\)"):
        load_rules(bad_yaml)
    bad_toml = write(tmp_path, "rules.toml", "[[rules]\nname = 1\n")
    with pytest.raises(RuleFileError, match=r"rules\.toml: not valid TOML"):
        load_rules(bad_toml)
    with pytest.raises(RuleFileError, match=r"rules\.json: unknown rule file type '\.json'"):
        load_rules(write(tmp_path, "rules.json", "{}"))
    with pytest.raises(RuleFileError, match=r"missing\.yaml: cannot read"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(RuleFileError, match=r"list\.yaml: expected a mapping with 'rules' and 'slos', got list"):
        load_rules(write(tmp_path, "list.yaml", "- a\n- b\n"))
    with pytest.raises(RuleFileError, match=r"rules: expected a list, got dict"):
        load_rules(write(tmp_path, "dict.yaml", "rules: {name: a}\n"))


def test_rule_file_error_is_a_value_error() -> None:
    assert issubclass(RuleFileError, ValueError)
