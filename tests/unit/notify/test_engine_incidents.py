"""Incidents, escalation, acknowledgement, manual resolve, remediation, intent ids and crash safety
of the notifier engine (pipeline/notify/engine.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.notify import Intent, Notifier, NotifierState, mark_delivered, silence, undelivered
from pipeline.notify.engine import REMEDIATION_PREFIX

from .factory import RECEIVERS, T0, Alerts, H, M, S, config, fps, kinds, ticks

ESCALATING = RECEIVERS + """
route:
  receiver: hook
  group_by: [alertname, project]
  repeat_interval: 1h
escalation:
  critical: {timeout: 5m, steps: [slack-oncall, email-oncall, pagerduty-oncall]}
  high: {steps: [hook, pagerduty-oncall]}
remediation:
  CheckoutDown: https://hooks.example.com/rollback
"""


def setup(text: str = ESCALATING) -> tuple[Notifier, NotifierState, Alerts]:
    return Notifier(config(text)), NotifierState(), Alerts()


def test_escalates_each_timeout_until_acknowledged() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    opened = notifier.on_tick(state, T0 + 30 * S)
    # the route's receiver, and step 0 of the critical policy with it
    assert [(i.kind, i.receiver, i.step) for i in opened] == [("firing", "hook", None),
                                                             ("escalation", "slack-oncall", 0)]
    incident_id = opened[0].incident_id
    out = ticks(notifier, state, T0 + 40 * S, T0 + 5 * M + 30 * S)
    assert [(i.kind, i.receiver, i.step, i.created_at - T0) for i in out] == [
        ("escalation", "email-oncall", 1, 5 * M + 30 * S)]
    acks = notifier.acknowledge(state, incident_id, "alice", T0 + 7 * M)
    assert [(i.kind, i.receiver, i.by) for i in acks] == [
        ("acknowledged", r, "alice") for r in ("hook", "slack-oncall", "email-oncall")]
    # no pagerduty step, and no repeats, once acknowledged
    assert ticks(notifier, state, T0 + 7 * M, T0 + 3 * H) == []
    incident = state.incidents[incident_id]
    assert (incident.status, incident.acked_by, incident.step) == ("acknowledged", "alice", 1)
    assert [e["what"] for e in incident.timeline] == [
        "opened: HighErrorRate firing (a)", "notified hook (firing, 1 firing, 0 resolved)",
        "escalated to step 0: slack-oncall", "escalated to step 1: email-oncall", "acknowledged"]
    assert incident.timeline[-1] == {"at": T0 + 7 * M, "what": "acknowledged", "by": "alice"}
    # acknowledging again: nothing open matches
    with pytest.raises(LookupError):
        notifier.acknowledge(state, incident_id, "bob", T0 + 8 * M)


def test_unacknowledged_escalation_stops_after_the_last_step_and_never_pages_a_step_twice() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    out = ticks(notifier, state, T0, T0 + 2 * H, 5 * S)
    escalations = [(i.receiver, i.step) for i in out if i.kind == "escalation"]
    assert escalations == [("slack-oncall", 0), ("email-oncall", 1), ("pagerduty-oncall", 2)]
    # repeats go to the route's receiver only
    assert [(i.kind, i.receiver, i.created_at - T0) for i in out if i.kind == "repeat"] == [
        ("repeat", "hook", 30 * S + H)]
    assert len({i.intent_id for i in out}) == len(out)
    # ticking the same instant twice changes nothing
    assert notifier.on_tick(state, T0 + 2 * H) == []


def test_step_zero_that_is_the_route_receiver_is_not_paged_twice() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="page"), T0)  # page -> high: [hook, pagerduty]
    opened = notifier.on_tick(state, T0 + 30 * S)
    assert kinds(opened) == [("firing", "hook")]
    out = ticks(notifier, state, T0 + 40 * S, T0 + 30 * S + 15 * M)
    assert [(i.kind, i.receiver, i.step) for i in out] == [("escalation", "pagerduty-oncall", 1)]


def test_levels_without_steps_do_not_escalate() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="warning"), T0)  # medium: no steps
    assert kinds(ticks(notifier, state, T0, T0 + 50 * M)) == [("firing", "hook")]


def test_a_critical_joining_raises_the_level_and_starts_escalation() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("w", T0, severity="warning"), T0)
    notifier.on_tick(state, T0 + 30 * S)
    notifier.on_alert(state, alerts.fire("c", T0 + M, severity="critical"), T0 + M)
    out = ticks(notifier, state, T0 + M, T0 + 5 * M + 30 * S)
    assert [(i.kind, i.receiver, i.step, i.severity) for i in out] == [
        ("firing", "hook", None, "critical"), ("escalation", "slack-oncall", 0, "critical")]
    incident = state.incidents[out[0].incident_id]
    assert incident.level == "critical"
    assert "level raised from medium to critical (HighErrorRate critical)" in [e["what"] for e in incident.timeline]


def test_escalation_waits_while_the_incident_is_silenced() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    notifier.on_tick(state, T0 + 30 * S)
    silence(state, 'alertname="HighErrorRate"', T0 + M, T0 + 20 * M, "alice", "on it, no ack at hand")
    assert ticks(notifier, state, T0 + M, T0 + 20 * M - S) == []
    out = ticks(notifier, state, T0 + 20 * M, T0 + 21 * M)
    assert [(i.receiver, i.step) for i in out if i.kind == "escalation"] == [("email-oncall", 1)]


def test_acknowledge_by_fingerprint_and_unknown_targets() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    notifier.on_tick(state, T0 + 30 * S)
    assert len(notifier.acknowledge(state, "a", "alice", T0 + M)) == 2
    with pytest.raises(LookupError):
        notifier.acknowledge(state, "no-such-thing", "alice", T0 + M)


def test_manual_resolve_notifies_everyone_told_and_ignores_the_same_episode() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    opened = notifier.on_tick(state, T0 + 30 * S)
    notifier.on_tick(state, T0 + 5 * M + 30 * S)  # step 1: email
    out = notifier.resolve(state, opened[0].incident_id, "bob", T0 + 6 * M)
    assert [(i.kind, i.receiver, i.status, i.by, fps(i)) for i in out] == [
        ("resolved", r, "resolved", "bob", [("a", "resolved")]) for r in ("hook", "slack-oncall", "email-oncall")]
    assert {i.incident_id for i in out} == {opened[0].incident_id}
    incident = state.incidents[opened[0].incident_id]
    assert (incident.status, incident.resolved_by, incident.timeline[-1]["what"]) == (
        "resolved", "bob", "resolved manually")
    # the alert source still evaluates the same episode as firing: ignored
    notifier.on_alert(state, alerts.fire("a", T0 + 7 * M, severity="critical"), T0 + 7 * M)
    assert ticks(notifier, state, T0 + 7 * M, T0 + H) == []
    # a new episode (it resolved at the source, then fired again) is a new incident
    notifier.on_alert(state, alerts.resolve("a", T0 + H + M, severity="critical"), T0 + H + M)
    notifier.on_alert(state, alerts.fire("a", T0 + H + 2 * M, severity="critical"), T0 + H + 2 * M)
    again = ticks(notifier, state, T0 + H + 2 * M, T0 + H + 3 * M)
    assert kinds(again) == [("firing", "hook"), ("escalation", "slack-oncall")]
    assert again[0].incident_id != opened[0].incident_id


def test_remediation_is_called_once_per_firing_episode() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("x", T0, rule="CheckoutDown", severity="warning"), T0)
    notifier.on_alert(state, alerts.fire("y", T0, rule="OtherRule", severity="warning"), T0)
    out = ticks(notifier, state, T0, T0 + 3 * H)
    remediations = [i for i in out if i.kind == "remediation"]
    assert [(i.receiver, fps(i)) for i in remediations] == [(REMEDIATION_PREFIX + "CheckoutDown", [("x", "firing")])]
    assert any(i.kind == "repeat" for i in out)  # repeats do not call it again
    incident = state.incidents[remediations[0].incident_id]
    assert "remediation called for CheckoutDown (x)" in [e["what"] for e in incident.timeline]
    notifier.on_alert(state, alerts.resolve("x", T0 + 3 * H, rule="CheckoutDown"), T0 + 3 * H)
    ticks(notifier, state, T0 + 3 * H, T0 + 4 * H)
    notifier.on_alert(state, alerts.fire("x", T0 + 5 * H, rule="CheckoutDown"), T0 + 5 * H)
    out = ticks(notifier, state, T0 + 5 * H, T0 + 6 * H)
    assert [i.kind for i in out].count("remediation") == 1


def test_remediation_waits_for_the_silence() -> None:
    notifier, state, alerts = setup()
    silence(state, 'alertname="CheckoutDown"', T0, T0 + H, "alice", "maintenance")
    notifier.on_alert(state, alerts.fire("x", T0, rule="CheckoutDown"), T0)
    assert ticks(notifier, state, T0, T0 + H - S) == []
    assert [i.kind for i in ticks(notifier, state, T0 + H, T0 + 2 * H)] == ["firing", "remediation"]


# --- intent ids, the ledger, and crash safety -------------------------------------------------------


Step = Callable[[Notifier, NotifierState], list[Intent]]


def scenario() -> list[Step]:
    """A busy hour: grouping, an update, inhibition, escalation, a silence, an ack, resolves."""
    alerts = Alerts()
    events: list[tuple[int, dict[str, Any]]] = [
        (0, alerts.fire("a", T0, severity="critical")),
        (5 * S, alerts.fire("b", T0 + 5 * S, severity="critical")),
        (2 * M, alerts.fire("w", T0 + 2 * M, severity="warning", labels={"project": "blog"})),
        (3 * M, alerts.fire("x", T0 + 3 * M, rule="CheckoutDown", severity="page")),
        (12 * M, alerts.resolve("b", T0 + 12 * M, severity="critical")),
        (40 * M, alerts.resolve("a", T0 + 40 * M, severity="critical")),
    ]
    steps: list[tuple[int, Step]] = [(at, lambda n, s, e=e, at=at: n.on_alert(s, e, T0 + at)) for at, e in events]
    steps.append((8 * M, lambda n, s: [] if silence(s, 'project="blog"', T0 + 8 * M, T0 + 30 * M, "al", "") else []))
    steps.append((20 * M, lambda n, s: n.acknowledge(s, "x", "alice", T0 + 20 * M)))
    steps.append((50 * M, lambda n, s: n.resolve(s, "x", "bob", T0 + 50 * M)))
    steps += [(t, lambda n, s, t=t: n.on_tick(s, T0 + t)) for t in range(0, 2 * H, 15 * S)]
    steps.sort(key=lambda item: item[0])  # stable: at equal times, events and commands before the tick
    return [step for _, step in steps]


def run(steps: list[Step], snapshot_every: int | None = None) -> list[dict[str, Any]]:
    notifier, state = Notifier(config(ESCALATING)), NotifierState()
    out: list[dict[str, Any]] = []
    for n, step in enumerate(steps):
        if snapshot_every and n % snapshot_every == 0:
            # a crash: only the JSON of the state survives, and a new process loads it
            notifier = Notifier(config(ESCALATING))
            state = NotifierState.from_json(json.loads(json.dumps(state.to_json())))
        out += [i.to_json() for i in step(notifier, state)]
    return out


def test_state_json_round_trip_mid_sequence_gives_identical_intents() -> None:
    straight = run(scenario())
    assert len(straight) > 10
    assert {i["kind"] for i in straight} >= {"firing", "resolved", "repeat", "escalation", "acknowledged",
                                             "remediation"}
    for every in (1, 7, 50):
        assert run(scenario(), snapshot_every=every) == straight
    assert len({i["intent_id"] for i in straight}) == len(straight)
    assert [Intent.from_json(i).to_json() for i in straight] == straight


def test_replay_after_restart_does_not_emit_what_the_outbox_has() -> None:
    notifier, alerts = Notifier(config(ESCALATING)), Alerts()
    state = NotifierState()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    snapshot = json.dumps(state.to_json())  # the last snapshot before the crash
    event_b = alerts.fire("b", T0 + 5 * S, severity="critical")
    notifier.on_alert(state, event_b, T0 + 5 * S)
    sent = notifier.on_tick(state, T0 + 30 * S)
    assert [i.kind for i in sent] == ["firing", "escalation"]
    assert undelivered(state) == [i.intent_id for i in sent]
    mark_delivered(state, sent[0].intent_id, T0 + 31 * S)
    assert undelivered(state) == [sent[1].intent_id]
    after = state.to_json()

    # restart: the old snapshot, told what the outbox holds, then the same input again
    restored = NotifierState.from_json(json.loads(snapshot))
    for intent in sent:
        mark_delivered(restored, intent.intent_id, T0 + 31 * S)
    assert notifier.on_alert(restored, event_b, T0 + 5 * S) == []
    assert notifier.on_tick(restored, T0 + 30 * S) == []  # same ids: nothing is sent twice
    assert restored.to_json()["groups"] == after["groups"]
    assert restored.to_json()["incidents"] == after["incidents"]
    # and later decisions go on as if nothing happened
    assert [i.kind for i in notifier.on_tick(restored, T0 + 5 * M + 30 * S)] == ["escalation"]


def test_ledger_entries_marked_without_a_time_survive_ticks_until_their_retention() -> None:
    from pipeline.notify.engine import LEDGER_RETENTION_MS

    notifier, alerts = Notifier(config(ESCALATING)), Alerts()
    state = NotifierState()
    snapshot = json.dumps(state.to_json())
    notifier.on_alert(state, event := alerts.fire("a", T0), T0)
    sent = notifier.on_tick(state, T0 + 30 * S)
    restored = NotifierState.from_json(json.loads(snapshot))
    for intent in sent:
        mark_delivered(restored, intent.intent_id)  # the outbox does not say when
    notifier.on_tick(restored, T0)  # a tick before the replay must not forget them
    notifier.on_alert(restored, event, T0)
    assert notifier.on_tick(restored, T0 + 30 * S) == []
    assert undelivered(restored) == []
    later = notifier.on_tick(restored, T0 + LEDGER_RETENTION_MS + M)  # a repeat: the alert still fires
    assert set(restored.ledger) == {i.intent_id for i in later}  # the old entries are gone


def test_new_alert_in_an_acknowledged_incident_is_an_update_without_escalation() -> None:
    notifier, state, alerts = setup()
    notifier.on_alert(state, alerts.fire("a", T0, severity="critical"), T0)
    [opened, _] = notifier.on_tick(state, T0 + 30 * S)
    notifier.acknowledge(state, "a", "alice", T0 + M)
    notifier.on_alert(state, alerts.fire("b", T0 + 2 * M, severity="critical"), T0 + 2 * M)
    out = ticks(notifier, state, T0 + 2 * M, T0 + H)
    assert [(i.kind, i.receiver, fps(i)) for i in out] == [("firing", "hook", [("a", "firing"), ("b", "firing")])]
    assert out[0].incident_id == opened.incident_id
    assert state.incidents[opened.incident_id].status == "acknowledged"
