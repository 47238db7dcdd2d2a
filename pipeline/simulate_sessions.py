"""Simulated browser sessions for sessionization, with the true answer known from construction.

Pure and seeded: the same seed and start time give the same events. While it builds each session
the generator keeps its own books (session splits, page views, clicks, rage bursts, dead clicks,
errors, bounces) following the product rules below; it never runs the project's Sessionizer.
Tests feed ``SessionScenario.events`` to the Sessionizer and compare with ``SessionScenario.truth``.

Rules the truth follows (event time = the event's ``timestamp``, in ms):

* A session (per ``session_id``) ends when the next event is more than 30 min after the previous
  one (exactly 30 min continues) or comes 24 h or more after the session's first event; the next
  event starts a new session with the same id. Duration = last - first. Bounce = exactly one
  pageview and duration < 10 s.
* Rage click: a click continues a burst when it has the previous click's selector, is at most
  1000 ms after it and (when both have x, y) at most 30 px away (Manhattan). A burst of 3 or more
  clicks is one rage click of that many clicks. Bursts never span sessions.
* Dead click: ``observed`` present, ``observed_for_ms`` null or >= 2500, not navigated, not
  scrolled, ``dom_mutation_ms`` null or > 2500. Kind ``non_interactive`` if ``interactive`` is
  False, else ``unresponsive``.

Every session also contains deterministic near-threshold cases (``EDGE_SESSION_IDS``), each in its
own session id, e.g. ``sess-edge-rage-1001ms`` (no rage click) or ``sess-edge-idle-31min`` (two
sessions). Only ``action`` and ``error`` events are produced (vitals and api calls do not take part
in sessions).

Delivery is out of order, as from a browser SDK: events of a session go out in flushes every
``flush_every_s``; within a flush the order is shuffled, and some events slip to the session's next
flush when that is at most ``max_disorder_ms`` after the event. No event is sent more than
``max(flush_every_s, max_disorder_ms)`` after its event time, so a consumer with a larger allowed
lateness sees nothing late and its result cannot depend on the delivery order.

Example::

    scenario = generate_session_scenario(seed=7, start=datetime(2026, 11, 23, 10, tzinfo=timezone.utc))
    scenario.truth.session_count, scenario.truth.total_rage, scenario.truth.total_dead
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.simulate import ERROR_FAMILIES, PAGES, RELEASES, USER_AGENTS, Flush

IDLE_MS = 30 * 60 * 1000
MAX_SESSION_MS = 24 * 60 * 60 * 1000
BOUNCE_MAX_MS = 10_000
RAGE_MIN_CLICKS = 3
RAGE_MAX_GAP_MS = 1000
RAGE_MAX_DISTANCE_PX = 30.0
DEAD_WINDOW_MS = 2500.0
SPAN_MS = 3 * 60 * 60 * 1000  # every timestamp lies within [start, start + 3 h]
SESSION_START_SPREAD_MS = 60 * 60 * 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN = 60_000

# selector -> (tag, interactive)
SELECTORS = {
    "button#add": ("button", True),
    "a.nav": ("a", True),
    "button#buy": ("button", True),
    "input#search": ("input", True),
    "div.price": ("div", False),
    "img.hero": ("img", False),
    "span.badge": ("span", False),
}

EDGE_SESSION_IDS: tuple[str, ...] = (
    "sess-edge-rage-999ms",
    "sess-edge-rage-1000ms",
    "sess-edge-rage-1001ms",
    "sess-edge-rage-29px",
    "sess-edge-rage-31px",
    "sess-edge-rage-burst-6",
    "sess-edge-rage-alternating-selectors",
    "sess-edge-idle-29min",
    "sess-edge-idle-30min",
    "sess-edge-idle-31min",
    "sess-edge-bounce-9999ms",
    "sess-edge-bounce-10000ms",
    "sess-edge-bounce-two-pageviews",
    "sess-edge-dead-mutation-2500ms",
    "sess-edge-dead-mutation-2501ms",
    "sess-edge-dead-mutation-null",
    "sess-edge-dead-navigated",
    "sess-edge-dead-observed-1200ms",
    "sess-edge-dead-non-interactive",
    "sess-edge-dead-unobserved",
)


# ---------------------------------------------------------------- truth


@dataclass(frozen=True)
class ExpectedSession:
    session_id: str
    start_ms: int
    end_ms: int
    duration_ms: int
    pageviews: int
    clicks: int
    rage_clicks: int
    dead_clicks: int
    errors: int
    bounce: bool


@dataclass(frozen=True)
class ExpectedRage:
    session_id: str
    selector: str
    clicks: int


@dataclass(frozen=True)
class ExpectedDead:
    session_id: str
    event_id: str
    selector: str
    kind: str


@dataclass
class SessionTruth:
    sessions: list[ExpectedSession] = field(default_factory=list)
    rage_clicks: list[ExpectedRage] = field(default_factory=list)
    dead_clicks: list[ExpectedDead] = field(default_factory=list)

    @property
    def session_count(self) -> int:
        return len(self.sessions)

    @property
    def bounces(self) -> int:
        return sum(1 for s in self.sessions if s.bounce)

    @property
    def total_rage(self) -> int:
        return len(self.rage_clicks)

    @property
    def total_dead(self) -> int:
        return len(self.dead_clicks)

    def for_session(self, session_id: str) -> "SessionTruth":
        """The part of the truth about one session id (all its sessions)."""
        return SessionTruth([s for s in self.sessions if s.session_id == session_id],
                            [r for r in self.rage_clicks if r.session_id == session_id],
                            [d for d in self.dead_clicks if d.session_id == session_id])


@dataclass
class SessionScenario:
    flushes: list[Flush]
    truth: SessionTruth
    edge_session_ids: tuple[str, ...] = EDGE_SESSION_IDS

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.flushes for e in f.events]


def dead_kind(interactive: bool | None, observed: dict[str, Any] | None) -> str | None:
    """The dead-click decision of the rules above on a click's contract fields; None = not dead."""
    if observed is None:
        return None
    watched = observed.get("observed_for_ms")
    if watched is not None and watched < DEAD_WINDOW_MS:
        return None
    if observed.get("navigated") or observed.get("scrolled"):
        return None
    mutation = observed.get("dom_mutation_ms")
    if mutation is not None and mutation <= DEAD_WINDOW_MS:
        return None
    return "non_interactive" if interactive is False else "unresponsive"


class _Books:
    """The running truth of one session id; fed every event as it is emitted, in time order."""

    def __init__(self, session_id: str, truth: SessionTruth) -> None:
        self.session_id, self.truth = session_id, truth
        self.start: int | None = None
        self.last = 0
        self.pageviews = self.clicks = self.rage = self.dead = self.errors = 0
        self.burst_last: tuple[int, str, float | None, float | None] | None = None
        self.burst_len = 0

    def record(self, ts: int, type_: str, payload: dict[str, Any], event_id: str) -> None:
        if self.start is not None:
            assert ts > self.last, "events of a session are emitted in strictly increasing time"
            if ts - self.last > IDLE_MS or ts - self.start >= MAX_SESSION_MS:
                self.close()
        if self.start is None:
            self.start = ts
            self.pageviews = self.clicks = self.rage = self.dead = self.errors = 0
        self.last = ts
        if type_ == "error":
            self.errors += 1
            return
        kind = payload["kind"]
        if kind == "pageview":
            self.pageviews += 1
        elif kind == "click":
            self.clicks += 1
            self._rage(ts, payload["selector"], payload.get("x"), payload.get("y"))
            dead = dead_kind(payload.get("interactive"), payload.get("observed"))
            if dead:
                self.dead += 1
                self.truth.dead_clicks.append(ExpectedDead(self.session_id, event_id, payload["selector"], dead))

    def _rage(self, ts: int, selector: str, x: float | None, y: float | None) -> None:
        last = self.burst_last
        continues = (last is not None and last[1] == selector and ts - last[0] <= RAGE_MAX_GAP_MS
                     and (None in (x, y, last[2], last[3])
                          or abs(x - last[2]) + abs(y - last[3]) <= RAGE_MAX_DISTANCE_PX))  # type: ignore[operator]
        if continues:
            self.burst_len += 1
        else:
            self._end_burst()
            self.burst_len = 1
        self.burst_last = (ts, selector, x, y)

    def _end_burst(self) -> None:
        if self.burst_last is not None and self.burst_len >= RAGE_MIN_CLICKS:
            self.rage += 1
            self.truth.rage_clicks.append(ExpectedRage(self.session_id, self.burst_last[1], self.burst_len))
        self.burst_last, self.burst_len = None, 0

    def close(self) -> None:
        if self.start is None:
            return
        self._end_burst()
        duration = self.last - self.start
        self.truth.sessions.append(ExpectedSession(
            self.session_id, self.start, self.last, duration, self.pageviews, self.clicks, self.rage, self.dead,
            self.errors, self.pageviews == 1 and duration < BOUNCE_MAX_MS))
        self.start = None


# ---------------------------------------------------------------- emission


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


class _Writer:
    """Emits contract events of one session id at its clock ``t`` (ms) and keeps the books."""

    def __init__(self, rng: random.Random, project: str, session_id: str, t: int, truth: SessionTruth,
                 used_ids: set[str]) -> None:
        self.rng, self.project, self.session_id, self.t = rng, project, session_id, t
        self.used_ids = used_ids
        self.user_id = f"user-{rng.randrange(5000)}" if rng.random() < 0.4 else None
        self.anonymous_id = f"anon-{rng.getrandbits(40):x}"
        self.release = rng.choice(RELEASES)
        self.user_agent = rng.choice(USER_AGENTS)
        self.route, self.url = PAGES[0]
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.books = _Books(session_id, truth)

    def advance(self, ms: float) -> None:
        self.t += max(1, int(round(ms)))  # strictly increasing: no ties for the Sessionizer to order

    def goto(self, page: int | None = None) -> None:
        route, url = PAGES[page] if page is not None else self.rng.choice(PAGES)
        self.route, self.url = route, url.format(n=self.rng.randrange(1, 500))

    def _event_id(self) -> str:
        while True:
            event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if event_id not in self.used_ids:
                self.used_ids.add(event_id)
                return event_id

    def emit(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        event = {
            "event_id": self._event_id(), "type": type_, "project": self.project, "timestamp": _iso(self.t),
            "session_id": self.session_id, "anonymous_id": self.anonymous_id, "user_id": self.user_id,
            "release": self.release, "environment": "production", "url": self.url, "route": self.route,
            "user_agent": self.user_agent, "sdk": {"name": "pulse.browser", "version": "0.1.0"},
            "consent": True, type_: payload,
        }
        self.events.append((self.t, event))
        self.books.record(self.t, type_, payload, event["event_id"])
        return event

    # -- shorthands
    def pageview(self, page: int | None = None) -> None:
        self.goto(page)
        self.emit("action", {"kind": "pageview"})

    def click(self, selector: str, x: float | None = None, y: float | None = None, *,
              interactive: bool | None = None, observed: dict[str, Any] | None = None) -> None:
        tag, default_interactive = SELECTORS.get(selector, ("button", True))
        payload: dict[str, Any] = {"kind": "click", "selector": selector, "tag": tag, "x": x, "y": y,
                                   "interactive": default_interactive if interactive is None else interactive}
        if observed is not None:
            payload["observed"] = observed
        self.emit("action", payload)

    def error(self) -> None:
        family, exc_type, message, filename, function = self.rng.choice(ERROR_FAMILIES)
        self.emit("error", {
            "exception_type": exc_type, "message": message.format(n=self.rng.randrange(10, 99)), "handled": False,
            "mechanism": {"type": "onerror", "handled": False}, "level": "error",
            "stacktrace": [{"filename": f"https://shop.example.com/static/js/{filename}", "function": function,
                            "lineno": self.rng.randrange(10, 400), "colno": self.rng.randrange(1, 80),
                            "in_app": True}],
            "breadcrumbs": [{"category": "navigation", "message": self.route}], "tags": {"family": family}})

    def hidden(self) -> None:
        self.emit("action", {"kind": "visibility", "visibility": "hidden"})


def _effect(mutation_ms: float | None = 40.0, *, navigated: bool = False, scrolled: bool = False,
            observed_for_ms: float | None = 2500.0) -> dict[str, Any]:
    return {"dom_mutation_ms": mutation_ms, "navigated": navigated, "scrolled": scrolled,
            "observed_for_ms": observed_for_ms}


# ---------------------------------------------------------------- the edge cases


def _edge(w: _Writer) -> None:
    """The near-threshold case named by ``w.session_id``; clicks not meant to be dead have an effect."""
    sid = w.session_id.removeprefix("sess-edge-")
    ok = _effect(40.0)
    w.pageview(1)
    w.advance(2000)
    if sid in ("rage-999ms", "rage-1000ms", "rage-1001ms"):
        gap = int(sid.removeprefix("rage-").removesuffix("ms"))
        for i in range(3):
            if i:
                w.advance(gap)
            w.click("button#add", 400, 300, observed=ok)
    elif sid in ("rage-29px", "rage-31px"):
        dy = 9 if sid == "rage-29px" else 11
        for i in range(3):
            if i:
                w.advance(300)
            w.click("button#add", 400 + 20 * i, 300 + dy * i, observed=ok)  # |dx| + |dy| = 20 + dy per step
    elif sid == "rage-burst-6":
        for i in range(6):
            if i:
                w.advance(250)
            w.click("button#buy", 600 + (i % 2) * 3, 420 - (i % 3) * 2, observed=ok)
    elif sid == "rage-alternating-selectors":
        for i in range(6):
            if i:
                w.advance(200)
            w.click("button#add" if i % 2 == 0 else "button#buy", 400, 300, observed=ok)
    elif sid in ("idle-29min", "idle-30min", "idle-31min"):
        w.click("a.nav", 100, 40, observed=_effect(None, navigated=True))
        w.advance(int(sid.removeprefix("idle-").removesuffix("min")) * _MIN)
        w.pageview(2)
        w.advance(1500)
        w.click("button#add", 300, 500, observed=ok)
    elif sid in ("bounce-9999ms", "bounce-10000ms"):
        w.t = w.events[0][0] + int(sid.removeprefix("bounce-").removesuffix("ms"))
        w.click("button#add", 300, 500, observed=ok)
    elif sid == "bounce-two-pageviews":
        w.t = w.events[0][0] + 1_800
        w.pageview(3)
    elif sid.startswith("dead-"):
        observed: dict[str, Any] | None = {
            "dead-mutation-2500ms": _effect(2500.0), "dead-mutation-2501ms": _effect(2501.0),
            "dead-mutation-null": _effect(None), "dead-navigated": _effect(None, navigated=True),
            "dead-observed-1200ms": _effect(None, observed_for_ms=1200.0),
            "dead-non-interactive": _effect(None, observed_for_ms=None), "dead-unobserved": None,
        }[sid]
        selector = "img.hero" if sid == "dead-non-interactive" else "button#buy"
        w.click(selector, 500, 200, observed=observed)
    else:  # pragma: no cover - EDGE_SESSION_IDS and this function go together
        raise ValueError(f"unknown edge case {w.session_id}")
    if not sid.startswith("bounce-"):
        w.advance(3000)
        w.hidden()


# ---------------------------------------------------------------- random sessions


def _random_click_observation(rng: random.Random, selector: str) -> dict[str, Any] | None:
    r = rng.random()
    if r < 0.08:
        return None  # old SDK: no observation, undecidable
    if r < 0.13:
        return _effect(None, observed_for_ms=round(rng.uniform(100, 2499), 1))  # page left: undecidable
    watched = rng.choice([2500.0, 2500.0, None, round(rng.uniform(2500, 6000), 1)])
    if r < 0.28:  # no effect seen: dead
        return _effect(rng.choice([None, round(rng.uniform(2500.1, 5000), 1)]), observed_for_ms=watched)
    if selector == "a.nav" and rng.random() < 0.7:
        return _effect(None, navigated=True, observed_for_ms=watched)
    if rng.random() < 0.1:
        return _effect(None, scrolled=True, observed_for_ms=watched)
    return _effect(round(rng.uniform(5, 2500), 1), observed_for_ms=watched)


def _random_session(w: _Writer) -> None:
    rng = w.rng
    gaps = 0
    pages = rng.choice([1, 1, 2, 3, 4, 6])
    for n in range(pages):
        w.pageview()
        for _ in range(rng.randrange(0, 6)):
            w.advance(rng.uniform(300, 4000))
            selector = rng.choice(list(SELECTORS))
            w.click(selector, rng.randrange(1200), rng.randrange(800), observed=_random_click_observation(rng, selector))
        if rng.random() < 0.15:  # a rage burst: same element, fast, close together
            x, y = rng.randrange(20, 1180), rng.randrange(20, 780)
            for _ in range(rng.randrange(3, 8)):
                w.advance(rng.uniform(120, 400))
                w.click("button#pay", x + rng.randrange(-5, 6), y + rng.randrange(-5, 6),
                        observed=_effect(rng.choice([None, 60.0])))
        elif rng.random() < 0.1:  # almost: two fast clicks only
            w.advance(rng.uniform(300, 900))
            for _ in range(2):
                w.advance(rng.uniform(150, 600))
                w.click("button#pay", 640, 360, observed=_effect(80.0))
        for depth in (25, 50, 75, 90, 100)[: rng.randrange(0, 6)]:
            w.advance(rng.uniform(300, 3000))
            w.emit("action", {"kind": "scroll", "scroll_depth": depth})
        if w.route == "/checkout":
            w.advance(rng.uniform(200, 2000))
            w.emit("action", {"kind": "form_start", "form": "#checkout-form"})
            if rng.random() < 0.7:
                w.advance(rng.uniform(5000, 30000))
                w.emit("action", {"kind": "form_submit", "form": "#checkout-form"})
        if rng.random() < 0.12:
            w.advance(rng.uniform(10, 2000))
            w.error()
        if n < pages - 1:
            r = rng.random()
            if r < 0.1 and gaps < 2:  # away long enough for a new session (same session id)
                gaps += 1
                w.advance(rng.uniform(500, 3000))
                w.hidden()
                w.advance(rng.uniform(31 * _MIN, 45 * _MIN))
            elif r < 0.15 and gaps < 2:  # away, but back within the idle limit
                gaps += 1
                w.advance(rng.uniform(5 * _MIN, 29.9 * _MIN))
            else:
                w.advance(rng.uniform(1000, 8000))
    if rng.random() < 0.85:
        w.advance(rng.uniform(1000, 8000))
        w.hidden()


# ---------------------------------------------------------------- delivery


def _flushes(rng: random.Random, session_id: str, events: list[tuple[int, dict[str, Any]]], flush_every_ms: int,
             max_disorder_ms: int) -> list[Flush]:
    """SDK flushes of one session: by send time, shuffled inside, some events slipping to the next one."""
    groups: list[tuple[int, list[tuple[int, dict[str, Any]]]]] = []  # (send_at ms, events)
    boundary = events[0][0] + flush_every_ms
    bucket: list[tuple[int, dict[str, Any]]] = []
    for t, event in events:
        if t >= boundary and bucket:
            groups.append((boundary, bucket))
            bucket = []
            while boundary <= t:
                boundary += flush_every_ms
        bucket.append((t, event))
    groups.append((boundary, bucket))
    moved: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in groups]
    for i, (_, group) in enumerate(groups[:-1]):
        next_send = groups[i + 1][0]
        for item in list(group):
            if rng.random() < 0.15 and next_send - item[0] <= max_disorder_ms:
                group.remove(item)
                moved[i + 1].append(item)
    out = []
    for (send_at, group), extra in zip(groups, moved):
        batch = [e for _, e in group + extra]
        rng.shuffle(batch)
        if batch:
            out.append(Flush(session_id, _EPOCH + timedelta(milliseconds=send_at), batch))
    return out


def _start_ms(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    delta = start - _EPOCH
    ms, rest = divmod((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, 1000)
    return ms + (1 if rest else 0)  # round up: never before ``start``


def generate_session_scenario(*, seed: int, start: datetime, project: str = "demo", sessions: int = 60,
                              flush_every_s: float = 5.0, max_disorder_ms: int = 20_000) -> SessionScenario:
    """The edge cases plus ``sessions`` random sessions, starting within an hour of ``start``.

    All timestamps lie within [start, start + 3 h]. Flushes are ordered by send time; no event is
    sent more than ``max(flush_every_s, max_disorder_ms)`` after it happened.
    """
    # Its own random stream: the same seed in ``pipeline.simulate`` must not yield the same event ids.
    rng = random.Random(f"session-scenario:{seed}")
    base = _start_ms(start)
    truth = SessionTruth()
    used_ids: set[str] = set()
    flush_every_ms = max(1, int(round(flush_every_s * 1000)))
    flushes: list[Flush] = []
    random_ids: list[str] = []
    while len(random_ids) < sessions:
        sid = f"sess-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        if sid not in random_ids:
            random_ids.append(sid)
    for sid in [*EDGE_SESSION_IDS, *random_ids]:
        w = _Writer(rng, project, sid, base + rng.randrange(SESSION_START_SPREAD_MS), truth, used_ids)
        if sid in EDGE_SESSION_IDS:
            _edge(w)
        else:
            _random_session(w)
        w.books.close()
        assert base <= w.events[0][0] and w.events[-1][0] <= base + SPAN_MS
        flushes += _flushes(rng, sid, w.events, flush_every_ms, max_disorder_ms)
    flushes.sort(key=lambda f: f.send_at)
    return SessionScenario(flushes=flushes, truth=truth)
