"""Notifier config (pipeline/notify/config.py): loading, ${VAR} expansion, errors with paths, defaults."""

from __future__ import annotations

import pytest

from pipeline.notify.config import DEFAULT_CONFIG_PATH, ConfigError, format_duration, load_config, \
    load_config_file, parse_duration

from .factory import RECEIVERS, config


def test_default_config_loads_with_its_env_var() -> None:
    cfg = load_config_file(env={"PULSE_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/x"})
    assert DEFAULT_CONFIG_PATH.name == "default_config.yaml"
    [receiver] = cfg.receivers
    assert (receiver.name, receiver.kind, receiver.webhook.url) == ("default-webhook", "webhook",
                                                                    "https://hooks.example.com/x")
    assert cfg.external_url == "http://127.0.0.1:8080"  # ${VAR:-default}
    assert (cfg.root.group_wait_ms, cfg.root.group_interval_ms, cfg.root.repeat_interval_ms) == (30_000, 300_000,
                                                                                                 14_400_000)
    assert len(cfg.inhibit_rules) == 1


def test_unset_env_var_is_an_error_naming_field_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_file(env={})
    assert "receivers[0].webhook.url: environment variable PULSE_NOTIFY_WEBHOOK_URL is not set" in str(err.value)


def test_env_expansion_forms() -> None:
    cfg = load_config("""
receivers:
  - name: hook
    webhook: {url: "https://${HOST}/p$$th", headers: {X-Token: "${TOKEN:-none}"}}
route: {receiver: hook}
""", env={"HOST": "example.com"})
    assert cfg.receivers[0].webhook.url == "https://example.com/p$th"
    assert cfg.receivers[0].webhook.headers["X-Token"].get_secret_value() == "none"
    assert "none" not in repr(cfg.receivers[0])  # secrets do not show in reprs or logs


def test_errors_name_the_path_of_each_bad_field() -> None:
    bad = """
receivers:
  - name: a
    slack: {webhook_url: "ftp://x"}
  - name: b
  - name: c
    webhook: {url: "https://x"}
    email: {to: [x@example.com], from: y@example.com, smtp_host: h}
route:
  receiver: a
  group_wait: 5 minutes
  routes:
    - matchers: ['severity="critical"']
    - matchers: ['sev=~"("', 'ok="1"', 'no-op']
escalation:
  urgent: {}
"""
    with pytest.raises(ConfigError) as err:
        load_config(bad, source="notify.yaml")
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid notifier config notify.yaml:"
    text = "\n".join(lines)
    assert "receivers[0].slack.webhook_url: must start with http:// or https://" in text
    assert "receivers[1]: receiver 'b' needs exactly one of slack, pagerduty, webhook, email; got none" in text
    assert "receivers[2]: receiver 'c' needs exactly one" in text and "got webhook, email" in text
    assert "route.group_wait: expected a duration" in text
    assert "route.routes[1].matchers[0]: bad regex" in text
    assert "route.routes[1].matchers[2]: " in text
    assert "route.routes[1].matchers[1]" not in text
    assert "escalation.urgent: Extra inputs are not permitted" in text


def test_cross_references_are_checked() -> None:
    bad = RECEIVERS + """
  - name: hook
    webhook: {url: "https://x"}
route:
  receiver: hook
  matchers: ['a="1"']
  routes:
    - receiver: nobody
      routes: [{receiver: ghost}]
escalation:
  critical: {steps: [slack-oncall, pager]}
"""
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "receivers[5].name: duplicate receiver name 'hook'" in text
    assert "route.matchers: the root route matches every alert" in text
    assert "route.routes[0].receiver: unknown receiver 'nobody'" in text
    assert "route.routes[0].routes[0].receiver: unknown receiver 'ghost'" in text
    assert "escalation.critical.steps[1]: unknown receiver 'pager'" in text


def test_yaml_syntax_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("receivers: [")


def test_child_routes_inherit_receiver_grouping_and_timers() -> None:
    cfg = config(RECEIVERS + """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 10s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="critical"']
      group_interval: 1m
      routes:
        - matchers: ['project="shop"']
          receiver: slack-oncall
          group_by: ["..."]
""")
    child = cfg.root.children[0]
    grandchild = child.children[0]
    assert (child.receiver, child.group_by, child.group_wait_ms, child.group_interval_ms, child.repeat_interval_ms) \
        == ("hook", ["alertname"], 10_000, 60_000, 3_600_000)
    assert (grandchild.receiver, grandchild.group_all, grandchild.group_interval_ms) == ("slack-oncall", True, 60_000)
    assert child.key != cfg.root.key and grandchild.key.startswith(child.key)


def test_escalation_defaults_and_severity_levels() -> None:
    cfg = config(RECEIVERS + """
route: {receiver: hook}
escalation:
  critical: {steps: [slack-oncall, pagerduty-oncall]}
  medium: {timeout: 45m}
""")
    esc = cfg.escalation
    assert [esc.for_level(x).timeout for x in ("low", "medium", "high", "critical")] == [
        3_600_000, 2_700_000, 900_000, 300_000]
    assert esc.critical.steps == ["slack-oncall", "pagerduty-oncall"] and esc.low.steps == []
    assert [cfg.level_of(s) for s in ("info", "ticket", "warning", "page", "critical", "typo")] == [
        "low", "low", "medium", "high", "critical", "high"]


@pytest.mark.parametrize(("text", "ms"), [("30s", 30_000), ("5m", 300_000), ("1h30m", 5_400_000), ("500ms", 500),
                                          ("2d", 172_800_000), (90, 90_000), ("0s", 0)])
def test_durations(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1h 30m", "-1s", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
