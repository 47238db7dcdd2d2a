"""Memory per open session (issue 14: worker RSS <= 2 KB per open session, README "Memory" under
scale-out and sizing). RSS is measured by ``bench/load_bench.py``; what a unit test can hold
steady is the Python heap the session state keeps, which must stay well below that."""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from pipeline.contract import EVENT_ADAPTER
from pipeline.sessions.events import session_event
from pipeline.sessions.partition import PartitionSessions, Sourced
from pipeline.simulate_load import generate_load

RSS_BOUND_PER_OPEN_SESSION = 2048  # bytes, the worker's target (bench/load_bench.py measures it)
HEAP_BOUND_PER_OPEN_SESSION = 800  # bytes of Python objects of the session state (measured 662; 887 before)


def test_session_state_heap_per_open_session_is_bounded() -> None:
    plan = generate_load(events=20_000, sessions=5_000, shape="flush", seed=3, end_ms=1_800_000_000_000)
    messages = [(f"raw.{m.topic_kind}", offset, orjson.loads(m.value)) for offset, m in enumerate(plan.messages)
                if not m.malformed and m.topic_kind in ("actions", "errors")]
    del plan
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    part = PartitionSessions(0)
    for i in range(0, len(messages), 500):  # batches of 500 messages, events built as the worker does
        batch = [Sourced(topic, offset, e) for topic, offset, raw in messages[i:i + 500]
                 for e in (session_event(EVENT_ADAPTER.validate_python(v)) for v in raw) if e is not None]
        part.process(batch, {"raw.actions": messages[min(i + 499, len(messages) - 1)][1]})
        del batch
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    open_ = part.active_sessions
    assert open_ > 4_500  # all still open: the traffic spans 15 minutes, idle timeout 30
    per_session = held / open_
    print(f"{per_session:,.0f} bytes of Python heap per open session")
    assert per_session < HEAP_BOUND_PER_OPEN_SESSION < RSS_BOUND_PER_OPEN_SESSION, per_session
