"""What the collector's speed work must not change: the partition of a key, the verdict on an event's
time, and the limits the operator set when they are split over several processes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.collector.app import share_of_limits
from pipeline.ingest.producer import prepare_events, session_partitioner
from pipeline.ingest.validate import EventTimeWindow, check_event_time
from pipeline.settings import KafkaSettings, Settings

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
WINDOW = EventTimeWindow(max_future_s=3600, max_past_days=2, skew_min_s=60)


def test_session_partitioner_picks_what_the_default_partitioner_picks() -> None:
    default = DefaultPartitioner()
    for n in (1, 3, 4, 12):
        partitions = list(range(n))
        for i in range(500):
            key = f"s-{uuid.UUID(int=i * 7919).hex[:12]}".encode()
            assert session_partitioner(key, partitions, partitions) == default(key, partitions, partitions)
            assert session_partitioner(key, partitions, partitions) == default(key, partitions, partitions)  # cached
    assert session_partitioner(None, [0, 1], [1]) == 1  # no key: an available partition, as before


offsets = st.integers(min_value=-3 * 86_400, max_value=2 * 3600)


@settings(max_examples=300, deadline=None)
@given(event_offset_s=offsets, sent_offset_s=st.one_of(st.none(), st.integers(-200, 200)),
       clamp=st.booleans())
def test_prepare_events_judges_event_times_exactly_as_check_event_time(event_offset_s: int,
                                                                          sent_offset_s: int | None,
                                                                          clamp: bool) -> None:
    window = EventTimeWindow(WINDOW.max_future_s, WINDOW.max_past_days, WINDOW.skew_min_s,
                             "clamp" if clamp else "reject")
    timestamp = NOW + timedelta(seconds=event_offset_s)
    sent_at = None if sent_offset_s is None else NOW + timedelta(seconds=sent_offset_s)
    event = {"event_id": str(uuid.uuid4()), "type": "vital", "timestamp": timestamp.isoformat(), "session_id": "s1",
             "vital": {"name": "LCP", "value": 1.0}}
    if sent_at is not None:
        event["sent_at"] = sent_at.isoformat()
    expected = check_event_time(timestamp, sent_at, NOW, window)
    prepared = prepare_events([event], kafka=KafkaSettings(), now=NOW, source="t", project="p", received_at=NOW,
                              time_window=window)
    if expected.timestamp is None:
        assert prepared.accepted == 0 and prepared.rejected[0].reason == expected.reason
    else:
        assert prepared.accepted == 1
        [stored] = orjson.loads(prepared.messages[0].value)
        assert datetime.fromisoformat(stored["timestamp"]) == expected.timestamp


def test_limits_are_split_between_processes_and_round_up() -> None:
    base = Settings()
    limited = base.model_copy(update={"collector": base.collector.model_copy(
        update={"rate_limits": {"shop": 60_000, "tiny": 1}, "max_slow_bodies": 64})})
    assert share_of_limits(limited, 1) is limited
    two = share_of_limits(limited, 2).collector
    assert two.rate_limits == {"shop": 30_000, "tiny": 1} and two.max_slow_bodies == 32
    three = share_of_limits(limited, 3).collector
    assert three.rate_limits == {"shop": 20_000, "tiny": 1} and three.max_slow_bodies == 22
    assert limited.collector.rate_limits == {"shop": 60_000, "tiny": 1}  # the operator's settings stay as set


def test_processes_and_event_loop_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().collector.processes == 1 and Settings().collector.event_loop == "auto"
    monkeypatch.setenv("PULSE_COLLECTOR_PROCESSES", "4")
    monkeypatch.setenv("PULSE_COLLECTOR_EVENT_LOOP", "asyncio")
    assert Settings().collector.processes == 4 and Settings().collector.event_loop == "asyncio"
    monkeypatch.setenv("PULSE_COLLECTOR_PROCESSES", "0")
    with pytest.raises(Exception, match="PULSE_COLLECTOR_PROCESSES|processes"):
        Settings()
