"""Issue status transitions (pipeline/issues/lifecycle.py): pure, no Kafka."""

from __future__ import annotations

import copy

import pytest

from pipeline.issues import (
    Command,
    IssueRules,
    Occurrence,
    OccurrenceRecord,
    apply_command,
    apply_occurrences,
    parse_record,
)
from pipeline.issues.lifecycle import HOUR_MS, IssueState

RULES = IssueRules(new_period_ms=72 * HOUR_MS, escalation_factor=5, escalation_min_events=10, baseline_hours=24)
T0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS  # on an hour boundary


class Feed:
    """Occurrence records of one issue as one raw partition would carry them (increasing offsets)."""

    def __init__(self) -> None:
        self.offset = 0
        self.n = 0

    def record(self, *occs: tuple[int, str], partition: int = 0, offset: int | None = None) -> OccurrenceRecord:
        if offset is None:
            self.offset += 1
            offset = self.offset
        events = []
        for ts, release in occs:
            self.n += 1
            events.append(Occurrence(f"e{self.n}", ts, release))
        return OccurrenceRecord("shop", "g1", "TypeError: x", "app.js in f", "pulse.raw.errors", partition, offset,
                                tuple(events))


def run(state, feed_records):
    transitions = []
    for rec in feed_records:
        state, ts = apply_occurrences(state, rec, RULES)
        transitions += ts
    return state, transitions


def resolve(state, at_ms, in_release=None, command_id="c1"):
    return apply_command(state, Command(command_id, "resolve", "shop", "g1", at_ms, in_release, actor="ana"), RULES)


def test_first_error_makes_a_new_issue_with_one_alertable_transition():
    feed = Feed()
    state, ts = run(None, [feed.record((T0, "1.0"), (T0 + 5, "1.0"))])
    assert state.status == "new" and state.events == 2
    assert state.first_seen_ms == T0 and state.last_seen_ms == T0 + 5 and state.first_release == "1.0"
    assert [(t.kind, t.from_status, t.alertable) for t in ts] == [("new", "", True)]
    state, ts = run(state, [feed.record((T0 + 10, "1.1"))])
    assert ts == [] and state.events == 3 and state.last_release == "1.1" and state.releases == ["1.0", "1.1"]


def test_a_replayed_raw_message_is_not_counted_again():
    feed = Feed()
    first = feed.record((T0, "1.0"))
    state, _ = run(None, [first, feed.record((T0 + 1, "1.0"))])
    state, ts = run(state, [first])
    assert ts == [] and state.events == 2
    # another raw partition has its own offsets
    state, _ = run(state, [feed.record((T0 + 2, "1.0"), partition=1, offset=1)])
    assert state.events == 3


def test_new_becomes_ongoing_after_the_new_period_without_a_transition_event():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, ""))])
    state, ts = run(state, [feed.record((T0 + RULES.new_period_ms - 1, ""))])
    assert state.status == "new"
    state, ts = run(state, [feed.record((T0 + RULES.new_period_ms, ""))])
    assert state.status == "ongoing" and ts == []


def test_resolved_then_seen_in_a_later_release_regresses():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, "1.0"), (T0 + 1, "1.1"))])
    state, ts = resolve(state, T0 + 100)
    assert state.status == "resolved" and [t.kind for t in ts] == ["resolved"] and ts[0].actor == "ana"
    assert not ts[0].alertable
    # old releases still running and errors from before the resolution do not regress it
    state, ts = run(state, [feed.record((T0 + 200, "1.0"), (T0 + 201, "1.1"), (T0 + 50, "1.2"))])
    assert state.status == "resolved" and ts == []
    state, ts = run(state, [feed.record((T0 + 300, "1.2"))])
    assert state.status == "regressed"
    assert [(t.kind, t.from_status, t.release, t.alertable) for t in ts] == [("regressed", "resolved", "1.2", True)]


def test_resolved_in_a_release_regresses_on_that_release():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, "1.0"), (T0 + 1, "2.0"))])
    state, _ = resolve(state, T0 + 100, in_release="2.0")
    state, ts = run(state, [feed.record((T0 + 200, "1.0"))])
    assert state.status == "resolved"
    state, ts = run(state, [feed.record((T0 + 300, "2.0"))])
    assert [t.kind for t in ts] == ["regressed"]


def test_without_releases_any_later_error_regresses():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, ""))])
    state, _ = resolve(state, T0 + 100)
    state, ts = run(state, [feed.record((T0 + 101, ""))])
    assert [t.kind for t in ts] == ["regressed"] and state.status == "regressed"


def test_the_same_command_twice_changes_nothing_and_keeps_ids():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, "1.0"))])
    state, first = resolve(state, T0 + 100)
    snapshot = copy.deepcopy(state)
    state, again = resolve(state, T0 + 100)
    assert again == [] and state.resolved_at_ms == snapshot.resolved_at_ms
    other = copy.deepcopy(snapshot)
    other.status = "ongoing"
    _, replayed = resolve(other, T0 + 100)
    assert replayed[0].transition_id == first[0].transition_id


def spike(feed, state, baseline_per_hour: int, hours: int, spike_events: int, release="1.0"):
    """``hours`` of steady errors, then one hour with ``spike_events``."""
    records = []
    for h in range(hours):
        records.append(feed.record(*[(T0 + h * HOUR_MS + i, release) for i in range(baseline_per_hour)]))
    state, ts = run(state, records)
    assert ts == [] or [t.kind for t in ts] == ["new"]
    spike_hour = T0 + hours * HOUR_MS
    return run(state, [feed.record((spike_hour + i, release)) for i in range(spike_events)])


def test_escalating_needs_a_full_baseline_and_factor_times_its_average():
    feed = Feed()
    # 24 hours at 2 per hour: average 2, threshold max(10, 5 * 2) = 10
    state, ts = spike(feed, None, 2, 24, 9)
    assert state.status == "new" and ts == []
    state, ts = run(state, [feed.record((T0 + 24 * HOUR_MS + 100, "1.0"))])  # the 10th in that hour
    assert state.status == "escalating"
    assert [(t.kind, t.from_status, t.alertable) for t in ts] == [("escalating", "new", True)]
    # more errors in the same hour: no second transition
    state, ts = run(state, [feed.record((T0 + 24 * HOUR_MS + 200, "1.0"))])
    assert ts == []


def test_no_escalation_without_a_full_baseline():
    feed = Feed()
    state, ts = spike(feed, None, 1, 3, 50)
    assert state.status == "new" and [t.kind for t in ts] == []


def test_escalating_calms_down_to_ongoing_after_a_quiet_complete_hour():
    feed = Feed()
    state, _ = spike(feed, None, 1, 24, 30)
    assert state.status == "escalating"
    # the next hour is still busy, the one after is quiet (1 error)
    state, _ = run(state, [feed.record(*[(T0 + 25 * HOUR_MS + i, "1.0") for i in range(30)])])
    assert state.status == "escalating"
    state, _ = run(state, [feed.record((T0 + 26 * HOUR_MS, "1.0"))])
    assert state.status == "escalating"  # hour 25 (complete) was still above the threshold
    state, ts = run(state, [feed.record((T0 + 27 * HOUR_MS, "1.0"))])
    assert state.status == "ongoing" and ts == []


def test_ignored_stays_ignored_unless_until_escalating():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, "1.0"))])
    state, ts = apply_command(state, Command("c1", "ignore", "shop", "g1", T0 + 1), RULES)
    assert state.status == "ignored" and [t.kind for t in ts] == ["ignored"]
    state, ts = spike(feed, state, 1, 24, 40)
    assert state.status == "ignored" and ts == []

    feed2 = Feed()
    state2, _ = run(None, [feed2.record((T0, "1.0"))])
    state2, _ = apply_command(state2, Command("c2", "ignore", "shop", "g1", T0 + 1, until_escalating=True), RULES)
    state2, ts = spike(feed2, state2, 1, 24, 40)
    assert state2.status == "escalating" and [t.from_status for t in ts] == ["ignored"]


def test_unresolve_reopens_by_age():
    feed = Feed()
    state, _ = run(None, [feed.record((T0, "1.0"))])
    state, _ = resolve(state, T0 + 10)
    state, ts = apply_command(state, Command("c2", "unresolve", "shop", "g1", T0 + 20), RULES)
    assert state.status == "new" and state.resolved_at_ms is None and [t.kind for t in ts] == ["new"]
    state, _ = resolve(state, T0 + 30, command_id="c3")
    state, _ = apply_command(state, Command("c4", "unresolve", "shop", "g1", T0 + RULES.new_period_ms), RULES)
    assert state.status == "ongoing"


def test_state_survives_its_json_form():
    feed = Feed()
    state, _ = spike(feed, None, 1, 24, 30)
    state, _ = resolve(state, T0 + 30 * HOUR_MS)
    again = IssueState.from_json(state.to_json())
    assert again == state


def test_hourly_counts_are_bounded_by_the_baseline():
    feed = Feed()
    state, _ = run(None, [feed.record((T0 + h * HOUR_MS, "")) for h in range(100)])
    assert len(state.hourly) <= RULES.baseline_hours + 1


def test_records_round_trip_and_bad_records_are_named():
    rec = Feed().record((T0, "1.0"))
    assert parse_record(rec.to_json()) == rec
    cmd = Command("c1", "resolve", "shop", "g1", T0, "1.0", False, "ana")
    assert parse_record(cmd.to_json()) == cmd
    with pytest.raises(ValueError, match="unknown action 'delete'"):
        parse_record({**cmd.to_json(), "action": "delete"})
    with pytest.raises(ValueError, match="bad occurrences record: KeyError"):
        parse_record({"kind": "occurrences", "project": "p"})
    with pytest.raises(ValueError, match="unknown record kind"):
        parse_record({"kind": "other"})
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_record([1])
