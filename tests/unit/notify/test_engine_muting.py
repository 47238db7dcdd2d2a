"""Silences and inhibition in the notifier engine (pipeline/notify/engine.py).

Inhibition follows Alertmanager: a *firing* source alert mutes targets with equal ``equal`` labels
(missing = ""), checked when a group flushes. A group whose alerts are all muted notifies nothing and
forgets what it had notified (as Alertmanager's notification log does), so a warning that is still
firing when the critical resolves is notified again at its group's next flush. We differ in one
place: the resolved notice of an alert the receiver was told about is never muted.
"""

from __future__ import annotations

import pytest

from pipeline.notify import Notifier, NotifierState, expire_silence, list_silences, silence
from pipeline.notify.engine import SILENCE_RETENTION_MS

from .factory import BASIC, RECEIVERS, T0, Alerts, H, M, S, config, fps, kinds, ticks

INHIBIT = RECEIVERS + """
route:
  receiver: hook
  group_by: [alertname, project, severity]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, project]
"""


def test_silence_mutes_matching_alerts_only() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    sid = silence(state, ['project=~"shop|docs"'], T0, T0 + H, "alice", "deploying")
    notifier.on_alert(state, alerts.fire("shop", T0), T0)
    notifier.on_alert(state, alerts.fire("blog", T0, labels={"project": "blog"}), T0)
    out = ticks(notifier, state, T0, T0 + 30 * M)
    assert [fps(i) for i in out] == [[("blog", "firing")]]
    assert [s["status"] for s in list_silences(state, T0 + M)] == ["active"]
    assert sid in state.silences


def test_still_firing_alert_is_notified_after_its_silence_ends() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    silence(state, 'alertname="HighErrorRate"', T0, T0 + 10 * M, "alice", "known issue")
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    out = ticks(notifier, state, T0, T0 + H)
    # flushes at +30s, +5m30s, +10m30s...: the first one after the silence ended notifies
    assert [(i.kind, i.created_at - T0) for i in out] == [("firing", 10 * M + 30 * S)]
    assert [s["status"] for s in list_silences(state, T0 + H)] == ["expired"]
    assert list_silences(state, T0 + H, include_expired=False) == []


def test_expire_silence_early() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    sid = silence(state, 'project="shop"', T0, T0 + 4 * H, "alice", "")
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    assert ticks(notifier, state, T0, T0 + 2 * M) == []
    expire_silence(state, sid, T0 + 2 * M)
    out = ticks(notifier, state, T0 + 2 * M, T0 + H)
    assert [(i.kind, i.created_at - T0) for i in out] == [("firing", 5 * M + 30 * S)]
    assert list_silences(state, T0 + 3 * M)[0]["status"] == "expired"
    # a pending silence expired early never starts
    pending = silence(state, 'project="shop"', T0 + 2 * H, T0 + 3 * H, "bob", "later")
    expire_silence(state, pending, T0 + H)
    assert state.silences[pending].status(T0 + 2 * H + M) == "expired"
    # expired silences are dropped after the retention
    notifier.on_tick(state, T0 + H + SILENCE_RETENTION_MS + S)
    assert state.silences == {}
    with pytest.raises(KeyError):
        expire_silence(state, sid, T0)


def test_pending_silence_and_same_request_is_one_silence() -> None:
    state = NotifierState()
    a = silence(state, ['project="shop"'], T0 + H, T0 + 2 * H, "alice", "maintenance")
    b = silence(state, 'project=shop', T0 + H, T0 + 2 * H, "alice", "maintenance")
    assert a == b and len(state.silences) == 1
    assert list_silences(state, T0)[0]["status"] == "pending"
    assert list_silences(state, T0)[0]["matchers"] == ['project="shop"']


@pytest.mark.parametrize(("matchers", "starts", "ends", "message"), [
    ([], T0, T0 + H, "at least one matcher"),
    (['project=~".*"'], T0, T0 + H, "would match every alert"),
    (['project=""'], T0, T0 + H, "would match every alert"),
    (['project="shop"'], T0 + H, T0, "must end after it starts"),
    (['project=~"("'], T0, T0 + H, "bad regex"),
])
def test_bad_silences(matchers: list[str], starts: int, ends: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        silence(NotifierState(), matchers, starts, ends, "alice", "")


def test_firing_critical_mutes_the_warning_until_it_resolves() -> None:
    notifier, state, alerts = Notifier(config(INHIBIT)), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("crit", T0, severity="critical"), T0)
    notifier.on_alert(state, alerts.fire("warn", T0, severity="warning"), T0)
    # another project's warning has a different "project": not muted
    notifier.on_alert(state, alerts.fire("blog-warn", T0, severity="warning", labels={"project": "blog"}), T0)
    out = notifier.on_tick(state, T0 + 30 * S)
    assert sorted(fp for i in out for fp, _ in fps(i)) == ["blog-warn", "crit"]
    assert ticks(notifier, state, T0 + 40 * S, T0 + 22 * M) == []
    assert notifier.on_alert(state, alerts.resolve("crit", T0 + 22 * M, severity="critical"), T0 + 22 * M) == []
    out = ticks(notifier, state, T0 + 22 * M, T0 + H)
    assert [(i.kind, fps(i), i.created_at - T0) for i in out] == [
        ("resolved", [("crit", "resolved")], 25 * M + 30 * S),  # the critical's group tick
        ("firing", [("warn", "firing")], 25 * M + 30 * S),  # and the warning's, now unmuted
    ]


def test_warning_notified_before_the_critical_is_notified_again_after_it() -> None:
    notifier, state, alerts = Notifier(config(INHIBIT)), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("warn", T0, severity="warning"), T0)
    [first] = notifier.on_tick(state, T0 + 30 * S)
    notifier.on_alert(state, alerts.fire("crit", T0 + M, severity="critical"), T0 + M)
    out = ticks(notifier, state, T0 + M, T0 + 20 * M)
    assert [fps(i) for i in out] == [[("crit", "firing")]]  # the warning's group: all muted, silent
    notifier.on_alert(state, alerts.resolve("crit", T0 + 21 * M, severity="critical"), T0 + 21 * M)
    out = ticks(notifier, state, T0 + 21 * M, T0 + H)
    again = [i for i in out if i.group_key == first.group_key]
    assert [(i.kind, fps(i)) for i in again] == [("firing", [("warn", "firing")])]
    assert again[0].intent_id != first.intent_id and again[0].incident_id == first.incident_id


def test_resolved_notice_is_not_muted() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    [fired] = notifier.on_tick(state, T0 + 30 * S)
    silence(state, 'project="shop"', T0 + M, T0 + 4 * H, "alice", "")
    notifier.on_alert(state, alerts.resolve("a", T0 + 2 * M), T0 + 2 * M)
    out = ticks(notifier, state, T0 + 2 * M, T0 + H)
    assert [(i.kind, fps(i)) for i in out] == [("resolved", [("a", "resolved")])]
    assert out[0].incident_id == fired.incident_id


def test_alert_matching_both_sides_cannot_mute_its_peers() -> None:
    cfg = config(RECEIVERS + """
route:
  receiver: hook
  group_by: ["..."]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['project="shop"']
""")
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("c1", T0, severity="critical", labels={"page": "/1"}), T0)
    notifier.on_alert(state, alerts.fire("c2", T0, severity="critical", labels={"page": "/2"}), T0)
    notifier.on_alert(state, alerts.fire("w", T0, severity="warning"), T0)
    out = notifier.on_tick(state, T0 + 30 * S)
    assert sorted(fp for i in out for fp, _ in fps(i)) == ["c1", "c2"]  # both sides: no self-muting


def test_equal_labels_missing_on_both_sides_are_equal() -> None:
    cfg = config(INHIBIT.replace("equal: [alertname, project]", "equal: [alertname, region]"))
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("crit", T0, severity="critical"), T0)
    notifier.on_alert(state, alerts.fire("warn", T0, severity="warning"), T0)
    notifier.on_alert(state, alerts.fire("eu", T0, severity="warning", labels={"region": "eu"}), T0)
    out = notifier.on_tick(state, T0 + 30 * S)
    assert sorted(fp for i in out for fp, _ in fps(i)) == ["crit", "eu"]


def test_silenced_group_still_counts_as_notified_for_other_groups() -> None:
    # a silence is per alert: the same alert routed to two receivers is muted for both
    cfg = config(BASIC.replace("group_by: [alertname, project]", """group_by: [alertname, project]
  routes:
    - matchers: ['project="shop"']
      receiver: slack-oncall
      continue: true
    - matchers: ['project="shop"']
      receiver: email-oncall"""))
    notifier, state, alerts = Notifier(cfg), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0), T0)
    assert sorted(kinds(notifier.on_tick(state, T0 + 30 * S))) == [("firing", "email-oncall"),
                                                                   ("firing", "slack-oncall")]
    notifier.on_alert(state, alerts.fire("b", T0 + M, labels={"page": "/x"}), T0 + M)
    silence(state, 'page="/x"', T0 + M, T0 + H, "alice", "")
    assert ticks(notifier, state, T0 + M, T0 + 30 * M) == []
