"""Realistic simulated browser sessions, with the true answer attached.

Pure and seeded: the same seed and start time give the same events. Tests and the demo compare
what the pipeline stored against ``Scenario.truth``.

Example::

    scenario = generate_scenario(sessions=300, seed=7, start=datetime.now(timezone.utc), spread_s=60)
    scenario.truth.valid_by_type  # Counter({'action': ..., 'vital': ..., 'api': ..., 'error': ...})
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

PAGES = [("/", "https://shop.example.com/"), ("/product/:id", "https://shop.example.com/product/{n}"),
         ("/search", "https://shop.example.com/search?q=shoes"), ("/cart", "https://shop.example.com/cart"),
         ("/checkout", "https://shop.example.com/checkout")]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]
RELEASES = ["shop@2.13.0", "shop@2.14.0"]
# (family, exception type, message template, in-app file, function)
ERROR_FAMILIES = [
    ("checkout-price", "TypeError", "Cannot read properties of undefined (reading 'price')", "checkout.js", "renderTotal"),
    ("chunk-load", "ChunkLoadError", "Loading chunk {n} failed.", "runtime.js", "requireEnsure"),
    ("fetch-failed", "TypeError", "Failed to fetch", "api.js", "request"),
    ("gtag-missing", "ReferenceError", "gtag is not defined", "analytics.js", "track"),
    ("search-recursion", "RangeError", "Maximum call stack size exceeded", "search.js", "highlight"),
]
# name -> (median, sigma) of a log-normal; medians near real-world p50s
VITALS = {"LCP": (2100.0, 0.5), "FCP": (1300.0, 0.45), "TTFB": (450.0, 0.6), "CLS": (0.05, 0.9), "INP": (140.0, 0.6)}
API_ROUTES = [("GET", "/api/products"), ("GET", "/api/search"), ("POST", "/api/cart"), ("POST", "/api/checkout")]
MALFORMED_KINDS = ["negative-vital", "missing-session", "bad-event-id", "click-without-selector", "unknown-type"]


@dataclass
class Truth:
    valid_by_type: Counter[str] = field(default_factory=Counter)
    errors_by_family: Counter[str] = field(default_factory=Counter)
    malformed_by_kind: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    pageviews: int = 0

    @property
    def valid(self) -> int:
        return sum(self.valid_by_type.values())

    @property
    def malformed(self) -> int:
        return sum(self.malformed_by_kind.values())


@dataclass
class Flush:
    """What a browser SDK sends at once: events of one session, sent at ``send_at``."""

    session_id: str
    send_at: datetime
    events: list[dict[str, Any]]


@dataclass
class Scenario:
    flushes: list[Flush]
    truth: Truth

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.flushes for e in f.events]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return round(median * math.exp(rng.gauss(0.0, sigma)), 4 if median < 1 else 1)


class _SessionWriter:
    def __init__(self, rng: random.Random, project: str, start: datetime, truth: Truth) -> None:
        self.rng, self.project, self.truth = rng, project, truth
        self.session_id = f"sess-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        self.user_id = f"user-{rng.randrange(5000)}" if rng.random() < 0.4 else None
        self.anonymous_id = f"anon-{rng.getrandbits(40):x}"
        self.release = rng.choice(RELEASES)
        self.user_agent = rng.choice(USER_AGENTS)
        self.consent = rng.random() > 0.1
        self.t = start
        self.route, self.url = PAGES[0]
        self.events: list[tuple[datetime, dict[str, Any]]] = []

    def advance(self, ms: float) -> None:
        self.t += timedelta(milliseconds=ms)

    def emit(self, type_: str, payload: dict[str, Any]) -> None:
        event = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": type_, "project": self.project, "timestamp": self.t.isoformat(timespec="milliseconds"),
            "session_id": self.session_id, "anonymous_id": self.anonymous_id, "user_id": self.user_id,
            "release": self.release, "environment": "production", "url": self.url, "route": self.route,
            "user_agent": self.user_agent, "sdk": {"name": "pulse.browser", "version": "0.1.0"},
            "consent": self.consent, type_: payload,
        }
        self.events.append((self.t, event))
        self.truth.valid_by_type[type_] += 1


def _session(w: _SessionWriter) -> None:
    rng = w.rng
    w.truth.sessions += 1
    for _ in range(rng.choice([1, 1, 2, 3, 4, 6])):
        w.route, url = rng.choice(PAGES)
        w.url = url.format(n=rng.randrange(1, 500))
        w.emit("action", {"kind": "pageview"})
        w.truth.pageviews += 1
        for name, (median, sigma) in VITALS.items():
            if name == "INP" and rng.random() < 0.5:
                continue
            w.advance(rng.uniform(50, 400))
            w.emit("vital", {"name": name, "value": _lognormal(rng, median, sigma)})
        for _ in range(rng.randrange(0, 4)):
            method, path = rng.choice(API_ROUTES)
            failing = rng.random() < (0.15 if path == "/api/checkout" else 0.04)
            status = rng.choice([500, 502, 503, 0]) if failing else 200
            w.advance(rng.uniform(100, 900))
            w.emit("api", {"kind": "api", "url": f"https://shop.example.com{path}", "method": method, "status": status,
                           "duration_ms": _lognormal(rng, 3200.0 if failing else 240.0, 0.5), "initiator": "fetch"})
        for _ in range(rng.randrange(0, 6)):
            w.advance(rng.uniform(500, 4000))
            interactive = rng.random() < 0.8
            dead = rng.random() < 0.1
            w.emit("action", {"kind": "click", "selector": rng.choice(["button#add", "a.nav", "div.price", "img.hero"]),
                              "tag": "button" if interactive else "div", "x": rng.randrange(1200), "y": rng.randrange(800),
                              "interactive": interactive,
                              "observed": {"dom_mutation_ms": None if dead else round(rng.uniform(5, 300), 1),
                                           "navigated": False, "scrolled": False, "observed_for_ms": 2500}})
        if rng.random() < 0.1:  # a rage burst: same element, fast, close together
            x, y = rng.randrange(1200), rng.randrange(800)
            for _ in range(rng.randrange(3, 7)):
                w.advance(rng.uniform(120, 400))
                w.emit("action", {"kind": "click", "selector": "button#pay", "tag": "button", "x": x + rng.randrange(-5, 6),
                                  "y": y + rng.randrange(-5, 6), "interactive": True,
                                  "observed": {"dom_mutation_ms": None, "navigated": False, "scrolled": False}})
        for depth in (25, 50, 75, 90, 100)[: rng.randrange(0, 6)]:
            w.advance(rng.uniform(300, 3000))
            w.emit("action", {"kind": "scroll", "scroll_depth": depth})
        if w.route == "/checkout":
            w.emit("action", {"kind": "form_start", "form": "#checkout-form"})
            if rng.random() < 0.7:
                w.advance(rng.uniform(5000, 30000))
                w.emit("action", {"kind": "form_submit", "form": "#checkout-form"})
        if rng.random() < 0.12:
            family, exc_type, message, filename, function = rng.choice(ERROR_FAMILIES)
            w.advance(rng.uniform(10, 2000))
            w.emit("error", {
                "exception_type": exc_type, "message": message.format(n=rng.randrange(10, 99)), "handled": False,
                "mechanism": {"type": "onerror", "handled": False}, "level": "error",
                "stacktrace": [{"filename": "https://shop.example.com/static/js/vendor.js", "function": "dispatch",
                                "lineno": 1, "colno": 9921, "in_app": False},
                               {"filename": f"https://shop.example.com/static/js/{filename}", "function": function,
                                "lineno": rng.randrange(10, 400), "colno": rng.randrange(1, 80), "in_app": True}],
                "breadcrumbs": [{"category": "navigation", "message": w.route}],
                "tags": {"family": family}})
            w.truth.errors_by_family[family] += 1
        w.advance(rng.uniform(1000, 8000))
    w.emit("action", {"kind": "visibility", "visibility": "hidden"})


def _malformed(rng: random.Random, project: str, t: datetime, kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "project": project,
                            "timestamp": t.isoformat(), "session_id": f"sess-bad-{rng.getrandbits(32):x}"}
    if kind == "negative-vital":
        return {**base, "type": "vital", "vital": {"name": "LCP", "value": -12.5}}
    if kind == "missing-session":
        base.pop("session_id")
        return {**base, "type": "error", "error": {"exception_type": "Error", "message": "lost"}}
    if kind == "bad-event-id":
        return {**base, "event_id": "12345", "type": "action", "action": {"kind": "pageview"}}
    if kind == "click-without-selector":
        return {**base, "type": "action", "action": {"kind": "click", "x": 1, "y": 2}}
    return {**base, "type": "heartbeat"}


def generate_scenario(sessions: int, *, seed: int, start: datetime, spread_s: float = 60.0,
                      project: str = "demo", malformed_ratio: float = 0.02, flush_every_s: float = 5.0) -> Scenario:
    """``sessions`` sessions starting within ``spread_s`` of ``start``; events flushed every ``flush_every_s``."""
    rng = random.Random(seed)
    truth = Truth()
    flushes: list[Flush] = []
    for _ in range(sessions):
        w = _SessionWriter(rng, project, start + timedelta(seconds=rng.uniform(0, spread_s)), truth)
        _session(w)
        events = list(w.events)
        n_bad = sum(1 for _ in events if rng.random() < malformed_ratio)
        for _ in range(n_bad):
            kind = rng.choice(MALFORMED_KINDS)
            truth.malformed_by_kind[kind] += 1
            t, _e = rng.choice(events)
            events.append((t, _malformed(rng, project, t, kind)))
        events.sort(key=lambda te: te[0])
        # Group into SDK flushes: everything up to each flush boundary goes out together.
        bucket: list[dict[str, Any]] = []
        boundary = events[0][0] + timedelta(seconds=flush_every_s)
        for t, event in events:
            if t >= boundary and bucket:
                flushes.append(Flush(w.session_id, boundary, bucket))
                bucket = []
                while boundary <= t:
                    boundary += timedelta(seconds=flush_every_s)
            bucket.append(event)
        if bucket:
            flushes.append(Flush(w.session_id, boundary, bucket))
    flushes.sort(key=lambda f: f.send_at)
    return Scenario(flushes=flushes, truth=truth)
