"""Realistic browser traffic for load benchmarks and soak tests, shaped as /work/shared/design/LOAD_PROFILE.md
says real traffic is: what Kafka (or the collector) receives from many browser sessions at once.

Pure and seeded: the same arguments give the same bytes. The plan knows what the pipeline should
store (valid unique events per table) and dead-letter (malformed records), so a benchmark can check
exactness as well as speed.

* Event mix per event: click 25 %, web vital 27 %, DOM-mutation observation (a second report of a
  click carrying ``observed``, as posthog-js sends ``$dead_click`` after ``$autocapture``) 20 %,
  scroll 17 %, page view 5.5 %, visibility 2.8 %, error 2.2 %, form start/submit 0.25 %; API calls
  on top (``API_CALL_SHARE`` of all events). 10 % of sessions have 1-3 rage bursts; errors follow a
  Zipf-like frequency over ``ERROR_FAMILY_COUNT`` families, with occasional storms.
* Session timing: bursts of activity (steps 40-450 ms apart, ~14 events) separated by idle gaps
  that spread the session over its length.
* Message shapes: ``flush`` = SDK flushes, 1-5 events of one session and one raw topic per message,
  queued as posthog-js does: sent when the queue's 3 s timer (``FLUSH_INTERVAL_MS``, started by its
  first event) fires or its size cap is reached, so no flush holds events more than 3 s apart or is
  sent more than 3.5 s after its first event (2.6 events on average with ~20 events per session;
  fewer with very short sessions; errors travel alone, one Sentry envelope each, at once);
  ``one`` = one event per message (direct producers); ``batch50`` = up to 50 events of one session
  and raw topic per message, with no timer (an upper bound, not traffic; sessions need well over 50
  events for the messages to fill, and a message spans minutes).
  Messages are keyed by session id and ordered by send time, as a broker receives them.
* ~1.5 % of messages are sent again 5-30 s after their last event (retries: duplicates by event_id); ~0.1 % of
  records are malformed, each in a message of its own so every one is exactly one dead letter:
  truncated JSON, non-UTF-8 bytes, wrong types, an unknown type, an oversize (100-500 KB) error.

Timestamps lie within the ``span_s`` seconds before ``end_ms``, so every session is still open
(not idle for 30 min) when a run of a few minutes ends.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from pipeline.simulate import PAGES, RELEASES, USER_AGENTS, VITALS

Shape = Literal["flush", "one", "batch50"]
SHAPES: tuple[str, ...] = ("flush", "one", "batch50")
TOPIC_KINDS = ("errors", "vitals", "actions")  # raw topics, by KafkaSettings.raw_topics order
TABLE_FOR_TYPE = {"error": "errors", "vital": "vitals", "action": "actions", "api": "api_calls"}
KIND_FOR_TYPE = {"error": "errors", "vital": "vitals", "api": "vitals", "action": "actions"}

# (kind, share of events); observations follow their click, so clicks + observations = 45 %
EVENT_MIX = (("click", 0.25), ("vital", 0.27), ("observation", 0.20), ("scroll", 0.17), ("pageview", 0.055),
             ("visibility", 0.028), ("error", 0.022), ("form", 0.0025))
API_CALL_SHARE = 0.05
OBSERVED_CLICKS = 0.8  # clicks followed by an observation report: 0.8 x 25 % = 20 % of events
FLUSH_SIZES = (1, 2, 3, 4, 5)
FLUSH_WEIGHTS = (0.1, 0.15, 0.2, 0.25, 0.3)  # size caps, mean 3.5; timers, errors alone, session ends: ~2.6 sent
RETRY_SHARE = 0.015
RETRY_DELAY_MS = (5_000, 30_001)  # a retry arrives 5-30 s after its last event
FLUSH_INTERVAL_MS = 3_000  # posthog-js flushes its request queue every 3 s (flush_interval_ms)
SEND_DELAY_MS = (0, 500)  # from the flush (or a direct producer's send) to the broker
# Session timing: bursts of activity (a page load, a few interactions) of BURST_EVENTS on average,
# steps STEP_GAP_MS apart, separated by idle gaps that spread the bursts over the session.
BURST_EVENTS = 14
STEP_GAP_MS = (40, 450)
MALFORMED_SHARE = 0.001
MALFORMED_KINDS = ("truncated-json", "non-utf8", "wrong-types", "unknown-type", "oversize")
ERROR_FAMILY_COUNT = 36
SELECTORS = ("button#add", "a.nav", "button#buy", "input#search", "div.price", "img.hero", "span.badge",
             "button.filter", "a.product-card", "button#checkout")


@dataclass
class Message:
    """One Kafka record for a raw topic: ``topic_kind`` in TOPIC_KINDS, keyed by session id."""

    topic_kind: str
    key: bytes
    value: bytes
    send_ms: int
    events: int  # events the record carries (a malformed record counts as one)
    malformed: bool = False


@dataclass
class LoadTruth:
    """What the pipeline should end with, from construction."""

    rows_by_table: Counter[str] = field(default_factory=Counter)  # valid unique events per table
    malformed_by_kind: Counter[str] = field(default_factory=Counter)
    duplicate_events: int = 0  # events sent again (retries)
    sessions: int = 0

    @property
    def valid(self) -> int:
        return sum(self.rows_by_table.values())

    @property
    def malformed(self) -> int:
        return sum(self.malformed_by_kind.values())


@dataclass
class LoadPlan:
    messages: list[Message]
    truth: LoadTruth
    shape: str

    @property
    def events_sent(self) -> int:
        return sum(m.events for m in self.messages)

    @property
    def events_per_message(self) -> float:
        return self.events_sent / max(1, len(self.messages))

    @property
    def largest_message(self) -> int:
        return max((len(m.key) + len(m.value) for m in self.messages), default=0)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _zipf_family(rng: random.Random) -> int:
    """Error family index, Zipf-like (s = 1.1) over ERROR_FAMILY_COUNT families."""
    weights = _ZIPF
    return rng.choices(range(ERROR_FAMILY_COUNT), cum_weights=weights)[0]


_ZIPF: list[float] = []
_acc = 0.0
for _rank in range(1, ERROR_FAMILY_COUNT + 1):
    _acc += 1 / _rank ** 1.1
    _ZIPF.append(_acc)


class _Session:
    """One browser session: emits contract events in time order."""

    def __init__(self, rng: random.Random, project: str, start_ms: int, end_ms: int) -> None:
        self.rng, self.project = rng, project
        self.session_id = f"sess-{rng.getrandbits(64):016x}"
        self.key = self.session_id.encode()
        self.t, self.end_ms = start_ms, end_ms
        self.user_id = f"user-{rng.randrange(50_000)}" if rng.random() < 0.4 else None
        self.anonymous_id = f"anon-{rng.getrandbits(40):x}"
        self.release = rng.choice(RELEASES)
        self.bundle = f"main.{rng.getrandbits(28):07x}.js"
        self.user_agent = rng.choice(USER_AGENTS)
        self.route, self.url = PAGES[0]
        self.events: list[dict[str, Any]] = []
        self.rage_bursts = rng.choice((1, 2, 3)) if rng.random() < 0.10 else 0
        self.last_click: tuple[str, float, float] = ("button#add", 100.0, 100.0)

    def emit(self, type_: str, payload: dict[str, Any]) -> None:
        self.events.append({
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), "type": type_,
            "project": self.project, "timestamp": _iso(self.t), "session_id": self.session_id,
            "anonymous_id": self.anonymous_id, "user_id": self.user_id, "release": self.release,
            "environment": "production", "url": self.url, "route": self.route, "user_agent": self.user_agent,
            "sdk": {"name": "pulse.browser", "version": "0.1.0"}, type_: payload,
        })

    def step(self, kind: str) -> None:
        rng = self.rng
        if kind == "pageview":
            self.route, url = rng.choice(PAGES)
            self.url = url.format(n=rng.randrange(1, 500))
            self.emit("action", {"kind": "pageview"})
        elif kind == "click":
            selector = rng.choice(SELECTORS)
            x, y = float(rng.randrange(1200)), float(rng.randrange(800))
            self.last_click = (selector, x, y)
            self.emit("action", {"kind": "click", "selector": selector, "tag": selector.split("#")[0].split(".")[0],
                                 "x": x, "y": y, "interactive": not selector.startswith(("div", "img", "span"))})
        elif kind == "observation":
            selector, x, y = self.last_click
            self.t += rng.randrange(1, 40)  # the same click, reported again with what followed it
            dead = rng.random() < 0.08
            self.emit("action", {"kind": "click", "selector": selector, "x": x, "y": y, "observed": {
                "dom_mutation_ms": None if dead else round(rng.uniform(5, 400), 1), "navigated": False,
                "scrolled": False, "observed_for_ms": 2500}})
        elif kind == "vital":
            name = rng.choice(tuple(VITALS))
            median, sigma = VITALS[name]
            self.emit("vital", {"name": name, "value": round(median * rng.lognormvariate(0, sigma), 4)})
        elif kind == "scroll":
            self.emit("action", {"kind": "scroll", "scroll_depth": float(rng.choice((25, 50, 75, 90, 100)))})
        elif kind == "visibility":
            self.emit("action", {"kind": "visibility", "visibility": rng.choice(("hidden", "visible"))})
        elif kind == "form":
            self.emit("action", {"kind": rng.choice(("form_start", "form_submit")), "form": "#checkout-form"})
        elif kind == "api":
            path = rng.choice(("/api/products", "/api/search", "/api/cart", "/api/checkout"))
            failing = rng.random() < 0.04
            self.emit("api", {"kind": "api", "url": f"https://shop.example.com{path}", "method": "GET",
                              "status": rng.choice((500, 502, 0)) if failing else 200,
                              "duration_ms": round(240 * rng.lognormvariate(0, 0.5), 1), "initiator": "fetch"})
        elif kind == "error":
            family = _zipf_family(rng)
            repeats = rng.randrange(5, 41) if rng.random() < 0.01 else 1  # a storm: one error, many times
            for _ in range(repeats):
                self.emit("error", {
                    "exception_type": ("TypeError", "ReferenceError", "RangeError", "ChunkLoadError")[family % 4],
                    "message": f"family {family}: cannot read properties of undefined (reading 'f{family}')",
                    "handled": False, "mechanism": {"type": "onerror", "handled": False}, "level": "error",
                    "stacktrace": [{"filename": f"https://shop.example.com/static/js/{self.bundle}",
                                    "function": f"handler{family}", "lineno": 10 + family, "colno": 5,
                                    "in_app": True}],
                    "breadcrumbs": [{"category": "navigation", "message": self.route}]})
                self.t += rng.randrange(1, 50)

    def rage_burst(self) -> None:
        selector, x, y = self.last_click
        for _ in range(self.rng.randrange(3, 7)):
            self.t += self.rng.randrange(120, 400)
            self.emit("action", {"kind": "click", "selector": selector, "x": x + self.rng.randrange(-5, 6),
                                 "y": y + self.rng.randrange(-5, 6), "interactive": True})


def _session_events(rng: random.Random, s: _Session, count: int, kinds: list[str], weights: list[float]) -> None:
    """``count`` events in bursts of activity (a page load, a few interactions: steps ``STEP_GAP_MS``
    apart), separated by idle gaps that spread the bursts over the session's length, as people use
    pages: so an SDK queue flushed every few seconds holds several events, not one."""
    s.step("pageview")
    start = s.t
    bursts = max(1, round(count / BURST_EVENTS))
    idle = max(1, (s.end_ms - start) // bursts - BURST_EVENTS * STEP_GAP_MS[1] // 2)
    rage_at = set(rng.sample(range(count), min(count, s.rage_bursts))) if s.rage_bursts else set()
    i = 0
    left_in_burst = rng.randint(1, 2 * BURST_EVENTS - 1)
    while len(s.events) < count:
        if left_in_burst <= 0:  # idle until the next burst
            step = rng.randrange(1, 2 * idle + 1)
            left_in_burst = rng.randint(1, 2 * BURST_EVENTS - 1)
        else:
            step = rng.randrange(*STEP_GAP_MS)
        # not past the session's end, and never back in time (a storm or rage burst may have passed it)
        s.t = max(s.t, min(s.end_ms, s.t + step))
        before = len(s.events)
        kind = rng.choices(kinds, cum_weights=weights)[0]
        s.step(kind)
        if kind == "click" and rng.random() < OBSERVED_CLICKS:
            s.step("observation")  # the SDK reports what followed the click as a second event
        if i in rage_at:
            s.rage_burst()
        left_in_burst -= len(s.events) - before
        i += 1
    del s.events[count:]


def _malformed(rng: random.Random, kind: str, project: str, ts_ms: int) -> bytes:
    sid = f"sess-bad-{rng.getrandbits(32):x}"
    base = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "project": project,
            "timestamp": _iso(ts_ms), "session_id": sid}
    if kind == "truncated-json":
        whole = orjson.dumps({**base, "type": "action", "action": {"kind": "pageview"}})
        return whole[: len(whole) // 2]
    if kind == "non-utf8":
        return b'{"event_id": "\xff\xfe\xfd", "type": "action"}'
    if kind == "wrong-types":
        return orjson.dumps({**base, "type": "vital", "vital": {"name": "LCP", "value": "fast"}})
    if kind == "unknown-type":
        return orjson.dumps({**base, "type": "heartbeat"})
    size = rng.randrange(100_000, 500_001)  # oversize: a message far beyond the contract's 16 KiB
    return orjson.dumps({**base, "type": "error", "error": {"exception_type": "Error", "message": "x" * size}})


def _chunks(rng: random.Random, events: list[dict[str, Any]], shape: str) -> list[tuple[list[dict[str, Any]], int]]:
    """One session's events (in time order) -> (events of one message, send time), as an SDK sends them.

    ``flush``: one queue per raw topic, as posthog-js' request queue: the first event queued starts the
    flush timer (``FLUSH_INTERVAL_MS``), the queue is sent when it fires or when it holds its size cap
    (1-5, drawn when it opens), whichever comes first; errors go alone at once (one Sentry envelope).
    ``batch50``: queues of 50 events with no timer, sent at their 50th event (an upper bound, not
    traffic: a message spans minutes of a session, so in the Kafka-mode bench many of its events are
    behind the sessions watermark).
    ``one``: each event on its own (a direct producer). Every send adds ``SEND_DELAY_MS`` of network."""
    if shape == "one":
        return [([e], _ts_ms(e) + rng.randrange(*SEND_DELAY_MS)) for e in events]
    interval = None if shape == "batch50" else FLUSH_INTERVAL_MS
    out: list[tuple[list[dict[str, Any]], int]] = []
    queues: dict[str, tuple[list[dict[str, Any]], int, int | None]] = {}  # kind -> (events, cap, timer fires at)

    def send(kind: str, at: int) -> None:
        queued = queues.pop(kind)[0]
        out.append((queued, at + rng.randrange(*SEND_DELAY_MS)))

    for e in events:
        ts = _ts_ms(e)
        for kind in [k for k, q in queues.items() if q[2] is not None and q[2] < ts]:  # timers that fired
            send(kind, queues[kind][2])  # type: ignore[arg-type]
        kind = KIND_FOR_TYPE[e["type"]]
        if kind == "errors" and shape == "flush":
            out.append(([e], ts + rng.randrange(*SEND_DELAY_MS)))  # one envelope per error, at once
            continue
        queue = queues.get(kind)
        if queue is None:
            size = 50 if shape == "batch50" else rng.choices(FLUSH_SIZES, FLUSH_WEIGHTS)[0]
            queue = queues[kind] = ([], size, None if interval is None else ts + interval)
        queue[0].append(e)
        if len(queue[0]) >= queue[1]:
            send(kind, ts)
    for kind in list(queues):  # the session ends: its last timers fire (batch50: at its last event)
        queued, _, fires = queues[kind]
        send(kind, fires if fires is not None else _ts_ms(queued[-1]))
    return out


def _ts_ms(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)


def generate_load(*, events: int, sessions: int, shape: str = "flush", seed: int = 1, end_ms: int,
                  span_s: float = 900.0, project: str = "shop") -> LoadPlan:
    """About ``events`` events (excluding retries) from ``sessions`` sessions, in ``shape`` messages."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if events < 1 or sessions < 1:
        raise ValueError("events and sessions must be >= 1")
    rng = random.Random(f"load:{seed}")
    per_session = max(1, events // sessions)
    drawn = [(k, s) for k, s in EVENT_MIX if k != "observation"] + [("api", API_CALL_SHARE)]
    # every session opens with a page view: draw fewer of them so the share stays as profiled
    drawn = [(k, max(0.0, s - 1 / per_session) if k == "pageview" else s) for k, s in drawn]
    kinds = [k for k, _ in drawn]
    weights: list[float] = []
    acc = 0.0
    for _, share in drawn:
        acc += share
        weights.append(acc)
    truth = LoadTruth(sessions=sessions)
    messages: list[Message] = []
    span_ms = int(span_s * 1000)
    malformed_every = int(1 / MALFORMED_SHARE)
    records = 0
    for n in range(sessions):
        count = per_session + (1 if n < events - per_session * sessions else 0)
        count = max(1, round(count * rng.uniform(0.5, 1.5))) if sessions > 1 else count
        length = rng.uniform(0.2, 1.0) * span_ms
        start = end_ms - span_ms + int(rng.uniform(0, span_ms - length))
        s = _Session(rng, project, start, int(start + length))
        _session_events(rng, s, count, kinds, weights)
        for chunk, send_ms in _chunks(rng, s.events, shape):
            body = orjson.dumps(chunk[0] if shape == "one" else chunk)
            kind = KIND_FOR_TYPE[chunk[0]["type"]]
            messages.append(Message(kind, s.key, body, send_ms, len(chunk)))
            for e in chunk:
                truth.rows_by_table[TABLE_FOR_TYPE[e["type"]]] += 1
            if rng.random() < RETRY_SHARE:
                # sent again (or late) 5-30 s after its last event, as the profile says
                again = max(send_ms + 1, _ts_ms(chunk[-1]) + rng.randrange(*RETRY_DELAY_MS))
                messages.append(Message(kind, s.key, body, again, len(chunk)))
                truth.duplicate_events += len(chunk)
            records += 1
            if records % malformed_every == 0:
                bad = MALFORMED_KINDS[(records // malformed_every) % len(MALFORMED_KINDS)]
                truth.malformed_by_kind[bad] += 1
                bad_kind = "errors" if bad == "oversize" else rng.choice(TOPIC_KINDS)
                messages.append(Message(bad_kind, s.key, _malformed(rng, bad, project, send_ms), send_ms, 1, True))
    messages.sort(key=lambda m: m.send_ms)
    return LoadPlan(messages, truth, shape)


def collector_requests(plan: LoadPlan, rng: random.Random, max_events: int = 10,
                       flush_every_ms: int = 60_000) -> list[list[bytes]]:
    """Regroup a ``one``-shaped plan's events into collector requests: 1-``max_events`` events of one
    session, sent when full or ``flush_every_ms`` after the request's first event was due (the SDK's
    timer), in send order. A retried event is sent again in a later request. Malformed records are
    left out (the collector refuses them before Kafka; its own tests cover that)."""
    if plan.shape != "one":
        raise ValueError("collector requests are built from a plan of shape 'one'")
    pending: dict[bytes, tuple[int, int, list[bytes]]] = {}  # session -> (first due ms, size, events)
    out: list[list[bytes]] = []
    for m in plan.messages:
        if m.malformed:
            continue
        due = pending.get(m.key)
        if due is not None and m.send_ms - due[0] > flush_every_ms:
            out.append(pending.pop(m.key)[2])
            due = None
        if due is None:
            due = pending[m.key] = (m.send_ms, rng.randint(1, max_events), [])
        due[2].append(m.value)
        if len(due[2]) >= due[1]:
            out.append(pending.pop(m.key)[2])
    out += [events for _, _, events in pending.values()]
    return out
