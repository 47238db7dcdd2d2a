"""Routing, grouping and timers of the notifier engine (pipeline/notify/engine.py), in pure time."""

from __future__ import annotations

import copy

import pytest

from pipeline.notify import Notifier, NotifierState

from .factory import BASIC, RECEIVERS, T0, Alerts, H, M, S, config, fps, kinds, ticks

TREE = RECEIVERS + """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  routes:
    - matchers: ['severity="critical"']
      receiver: pagerduty-oncall
      continue: true
    - matchers: ['project=~"shop|checkout"']
      receiver: slack-oncall
      routes:
        - matchers: ['page=~"/checkout.*"']
          receiver: email-oncall
    - matchers: ['project="shop"']
      receiver: quiet-hook
"""


@pytest.mark.parametrize(("severity", "labels", "receivers"), [
    # continue: the critical route matches and the search goes on; the nested route is the deepest match
    ("critical", {"project": "shop", "page": "/checkout/pay"}, ["pagerduty-oncall", "email-oncall"]),
    # the nested route does not match: its parent is the match; the later sibling is never tried
    ("warning", {"project": "shop", "page": "/home"}, ["slack-oncall"]),
    # anchored regex: "shopping" is not shop|checkout, nor "shop": no child matches -> the root
    ("warning", {"project": "shopping"}, ["hook"]),
    ("critical", {"project": "blog"}, ["pagerduty-oncall"]),
])
def test_routing_tree(severity: str, labels: dict[str, str], receivers: list[str]) -> None:
    cfg = config(TREE)
    alert_labels = {**labels, "alertname": "HighErrorRate", "severity": severity}
    assert [r.receiver for r in cfg.root.match(alert_labels)] == receivers
    # and end to end, with group_wait 0 the notification goes out with the event
    notifier, state = Notifier(cfg), NotifierState()
    out = notifier.on_alert(state, Alerts().fire("a", T0, severity=severity, labels=labels), T0)
    assert sorted(kinds(out)) == sorted(("firing", r) for r in receivers)


def test_group_wait_batches_alerts_into_one_notification() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    assert notifier.on_alert(state, alerts.fire("a", T0), T0) == []
    assert notifier.on_alert(state, alerts.fire("b", T0 + 10 * S), T0 + 10 * S) == []
    assert notifier.on_alert(state, alerts.fire("c", T0 + 12 * S, labels={"project": "blog"}), T0 + 12 * S) == []
    assert ticks(notifier, state, T0, T0 + 29 * S, S) == []
    out = notifier.on_tick(state, T0 + 30 * S)
    assert kinds(out) == [("firing", "hook")]  # shop's group; blog's group started 12 s later
    [shop] = out
    assert fps(shop) == [("a", "firing"), ("b", "firing")]
    assert shop.group_labels == {"alertname": "HighErrorRate", "project": "shop"}
    assert shop.group_key == '{}:{alertname="HighErrorRate",project="shop"}'
    [blog] = notifier.on_tick(state, T0 + 42 * S)
    assert fps(blog) == [("c", "firing")] and blog.incident_id != shop.incident_id
    assert ticks(notifier, state, T0 + 43 * S, T0 + 5 * M) == []


def test_new_alert_in_a_notified_group_waits_for_group_interval() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    [first] = notifier.on_tick(state, T0 + 30 * S)
    notifier.on_alert(state, alerts.fire("b", T0 + 60 * S), T0 + 60 * S)
    # the group flushes every group_interval (5m) after its first flush: not before T0+30s+5m
    assert ticks(notifier, state, T0 + 60 * S, T0 + 30 * S + 5 * M - S, S) == []
    [update] = notifier.on_tick(state, T0 + 30 * S + 5 * M)
    assert update.kind == "firing" and fps(update) == [("a", "firing"), ("b", "firing")]
    assert update.incident_id == first.incident_id and update.intent_id != first.intent_id


def test_repeat_interval_while_firing() -> None:
    cfg = config(BASIC.replace("group_by: [alertname, project]",
                               "group_by: [alertname, project]\n  repeat_interval: 1h"))
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    out = ticks(notifier, state, T0, T0 + 3 * H + 30 * S, 30 * S)
    # first at +30s; repeats at the first group tick (every 5m from +30s) at least 1h later
    assert [(i.kind, i.created_at - T0) for i in out] == [
        ("firing", 30 * S), ("repeat", 30 * S + H), ("repeat", 30 * S + 2 * H), ("repeat", 30 * S + 3 * H)]
    assert len({i.intent_id for i in out}) == 4
    # refreshes of the same firing alert (new event ids) change nothing
    notifier.on_alert(state, alerts.fire("a", T0 + 3 * H + M), T0 + 3 * H + M)
    assert ticks(notifier, state, T0 + 3 * H + M, T0 + 4 * H) == []


def test_resolved_notice_is_sent_once_and_the_group_ends() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    notifier.on_alert(state, alerts.fire("b", T0), T0)
    [fired] = notifier.on_tick(state, T0 + 30 * S)
    # one of two resolves: an update (status still firing) at the next group tick
    notifier.on_alert(state, alerts.resolve("b", T0 + M), T0 + M)
    [update] = ticks(notifier, state, T0 + M, T0 + 6 * M)
    assert (update.kind, update.status, fps(update)) == ("firing", "firing", [("a", "firing"), ("b", "resolved")])
    notifier.on_alert(state, alerts.resolve("a", T0 + 7 * M), T0 + 7 * M)
    out = ticks(notifier, state, T0 + 7 * M, T0 + 2 * H)
    assert [(i.kind, i.status, fps(i)) for i in out] == [("resolved", "resolved", [("a", "resolved")])]
    assert out[0].incident_id == fired.incident_id
    assert state.groups == {}
    assert state.incidents[fired.incident_id].status == "resolved"
    # a late duplicate of the resolution (new event id, same episode) is ignored
    notifier.on_alert(state, {**alerts.fire("a", T0 + 3 * H), "status": "resolved", "starts_at": T0},
                      T0 + 3 * H)
    assert ticks(notifier, state, T0 + 3 * H, T0 + 4 * H) == []


def test_alert_that_fired_and_resolved_within_group_wait_is_never_notified() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    notifier.on_alert(state, alerts.resolve("a", T0 + 10 * S), T0 + 10 * S)
    assert ticks(notifier, state, T0, T0 + H) == []
    assert state.groups == {} and state.incidents == {}


def test_receiver_without_send_resolved_gets_no_resolved_notice() -> None:
    cfg = config(BASIC.replace("receiver: hook", "receiver: quiet-hook"))
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    assert kinds(notifier.on_tick(state, T0 + 30 * S)) == [("firing", "quiet-hook")]
    notifier.on_alert(state, alerts.resolve("a", T0 + M), T0 + M)
    assert ticks(notifier, state, T0 + M, T0 + H) == []
    assert state.groups == {} and all(i.status == "resolved" for i in state.incidents.values())


def test_duplicate_event_ids_are_ignored() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    event = alerts.fire("a", T0)
    notifier.on_alert(state, event, T0)
    before = copy.deepcopy(state.to_json())
    # the same event again (a Kafka redelivery), even with other content, changes nothing
    assert notifier.on_alert(state, event, T0 + S) == []
    assert notifier.on_alert(state, {**event, "status": "resolved"}, T0 + 2 * S) == []
    assert state.to_json() == before
    assert len(notifier.on_tick(state, T0 + 30 * S)) == 1


def test_out_of_order_events_are_ignored() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    old = alerts.fire("a", T0)
    notifier.on_alert(state, alerts.resolve("a", T0 + S), T0 + S)  # unknown and resolved: nothing to do
    new = alerts.fire("a", T0 + M)
    notifier.on_alert(state, new, T0 + M)
    notifier.on_alert(state, old, T0 + M + S)  # an older episode, arriving late
    assert state.alerts["a"].starts_at == T0 + M


def test_bad_alert_events_are_rejected_with_the_field() -> None:
    notifier, state = Notifier(config()), NotifierState()
    with pytest.raises(ValueError, match="missing fingerprint"):
        notifier.on_alert(state, {"event_id": "x", "rule": "r", "status": "firing", "severity": "info"}, T0)
    with pytest.raises(ValueError, match="status must be"):
        notifier.on_alert(state, {**Alerts().fire("a", T0), "status": "pending"}, T0)
    with pytest.raises(ValueError, match="starts_at"):
        notifier.on_alert(state, {**Alerts().fire("a", T0), "starts_at": "yesterday"}, T0)


def test_iso_times_are_accepted() -> None:
    notifier, state = Notifier(config()), NotifierState()
    notifier.on_alert(state, {**Alerts().fire("a", T0), "starts_at": "2023-11-14T22:13:20Z"}, T0)
    assert state.alerts["a"].starts_at == T0


def test_group_by_all_labels_gives_one_group_per_alert() -> None:
    cfg = config(BASIC.replace("group_by: [alertname, project]", 'group_by: ["..."]'))
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0, labels={"page": "/a"}), T0)
    notifier.on_alert(state, alerts.fire("b", T0, labels={"page": "/b"}), T0)
    assert [fps(i) for i in notifier.on_tick(state, T0 + 30 * S)] == [[("a", "firing")], [("b", "firing")]]
