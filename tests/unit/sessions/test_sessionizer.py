from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sessions.clicks import Click
from pipeline.sessions.sessionizer import Emitted, SessionEvent, Sessionizer, SessionRules

MIN = 60_000
LATENESS = 60_000


def ev(sid: str, ts: int, kind: str, n: int = 0, **kw: object) -> SessionEvent:
    return SessionEvent(session_id=sid, ts_ms=ts, event_id=f"{sid}-{ts}-{n}", kind=kind, **kw)  # type: ignore[arg-type]


def run(events: list[SessionEvent], batch: int = 7) -> Emitted:
    """Feed in arrival order, in batches, with watermark = max seen - lateness; then flush."""
    s = Sessionizer(SessionRules())
    out, max_seen = Emitted(), -(2**62)
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        assert s.add(chunk) == []
        max_seen = max(max_seen, *(e.ts_ms for e in chunk))
        out.extend(s.advance(max_seen - LATENESS))
    out.extend(s.flush_all())
    assert s.active_sessions == 0  # closed sessions release their state
    return out


def test_idle_29_minutes_continues_31_splits() -> None:
    a = run([ev("s", 0, "pageview", page="/"), ev("s", 29 * MIN, "pageview", page="/b")])
    assert len(a.sessions) == 1 and a.sessions[0].duration_ms == 29 * MIN and a.sessions[0].pageviews == 2
    b = run([ev("s", 0, "pageview", page="/"), ev("s", 31 * MIN, "pageview", page="/b")])
    assert [x.pageviews for x in b.sessions] == [1, 1]


def test_session_ends_at_24_hours() -> None:
    events = [ev("s", i * 20 * MIN, "custom") for i in range(0, 75)]  # 25 h of activity, never idle 30 min
    out = run(events)
    assert len(out.sessions) == 2
    assert out.sessions[0].end_ms - out.sessions[0].start_ms < 24 * 60 * MIN


def test_bounce_is_one_pageview_under_10_seconds() -> None:
    quick = run([ev("s", 0, "pageview", page="/"), ev("s", 9_999, "click", click=Click(9_999, "#x"))])
    slow = run([ev("s", 0, "pageview", page="/"), ev("s", 10_000, "click", click=Click(10_000, "#x"))])
    two = run([ev("s", 0, "pageview", page="/"), ev("s", 1_000, "pageview", page="/b")])
    assert (quick.sessions[0].bounce, slow.sessions[0].bounce, two.sessions[0].bounce) == (True, False, False)


def test_summary_counts_rage_dead_scroll_forms_and_pages() -> None:
    clicks = [ev("s", 1000 + i * 300, "click", i, click=Click(1000 + i * 300, "#pay", x=10, y=10)) for i in range(6)]
    events = [
        ev("s", 0, "pageview", page="/checkout", project="p", user_id="u", release="r1", user_agent="ua"),
        *clicks,
        ev("s", 5000, "click", 9, click=Click(5000, "div.price", observed=True, interactive=False)),
        ev("s", 6000, "scroll", scroll_depth=80.0),
        ev("s", 7000, "form_start", form="#f"),
        ev("s", 8000, "form_start", form="#g"),
        ev("s", 9000, "form_submit", form="#g"),
        ev("s", 10_000, "visibility", visible=False),
        ev("s", 20_000, "visibility", visible=True),
        ev("s", 25_000, "error"),
        ev("s", 30_000, "pageview", page="/done"),
    ]
    out = run(events)
    [s] = out.sessions
    assert (s.pageviews, s.clicks, s.rage_clicks, s.dead_clicks, s.errors) == (2, 7, 1, 1, 1)
    assert (s.forms_started, s.forms_submitted, s.forms_abandoned) == (2, 1, 1)
    assert (s.entry_page, s.exit_page, s.max_scroll, s.user_id, s.release) == ("/checkout", "/done", 80.0, "u", "r1")
    assert [r.rage.clicks for r in out.rage_clicks] == [6]
    [d] = out.dead_clicks
    assert (d.selector, d.kind, d.page) == ("div.price", "non_interactive", "/checkout")
    checkout = out.page_views[0]
    assert checkout.milestones == (25, 50, 75) and checkout.forms_abandoned == 1
    assert checkout.visible_ms == 10_000 + 10_000  # 0-10 s visible, hidden 10-20 s, visible 20-30 s


def test_late_events_are_returned_not_applied() -> None:
    s = Sessionizer()
    s.add([ev("s", 10 * MIN, "pageview", page="/")])
    s.advance(9 * MIN)
    late = s.add([ev("s", 8 * MIN, "click", click=Click(8 * MIN, "#a"))])
    assert len(late) == 1


def test_quiet_partition_closes_idle_sessions_when_the_timer_advances_the_watermark() -> None:
    s = Sessionizer()
    s.add([ev("s", 0, "pageview", page="/")])
    assert s.advance(30 * MIN).sessions == []  # exactly 30 min idle: a later event could still continue it
    assert len(s.advance(30 * MIN + 1).sessions) == 1


def _scenario(seed: int) -> list[SessionEvent]:
    rng = random.Random(seed)
    events = []
    for n in range(8):
        sid, t = f"s{n}", rng.randrange(0, 5 * MIN)
        events.append(ev(sid, t, "pageview", page="/a"))
        for i in range(rng.randrange(5, 25)):
            t += rng.choice([200, 999, 1000, 1001, 5000, 29 * MIN, 31 * MIN])
            kind = rng.choice(["click", "click", "click", "scroll", "pageview", "error", "form_start"])
            x = rng.choice([0, 29, 31])
            events.append(ev(sid, t, kind, i, page="/b", scroll_depth=float(rng.randrange(101)), form="#f",
                             click=Click(t, rng.choice(["#a", "#b"]), x=x, y=0, observed=rng.random() < 0.5)))
    return sorted(events, key=lambda e: e.ts_ms)


def _shuffle_within_lateness(events: list[SessionEvent], rng: random.Random) -> list[SessionEvent]:
    # Delay each event by up to the allowed lateness (in arrival order), never beyond it.
    keyed = [(e.ts_ms + rng.randrange(0, LATENESS // 2), e) for e in events]
    return [e for _, e in sorted(keyed, key=lambda k: k[0])]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 20))
def test_out_of_order_within_lateness_gives_identical_results(seed: int, shuffle_seed: int, batch: int) -> None:
    events = _scenario(seed)
    in_order = run(events, batch=batch)
    shuffled = run(_shuffle_within_lateness(events, random.Random(shuffle_seed)), batch=batch)
    key = lambda o: (sorted(map(repr, o.sessions)), sorted(map(repr, o.page_views)),  # noqa: E731
                     sorted(map(repr, o.rage_clicks)), sorted(map(repr, o.dead_clicks)))
    assert key(shuffled) == key(in_order)


def dead_report(ts: int, selector: str, n: int) -> SessionEvent:
    """What posthog-js' $dead_click becomes: the same click again, with an observation of no effect."""
    return ev("s", ts, "click", n, click=Click(ts, selector, x=10, y=10, observed=True, observed_for_ms=3000))


def test_a_click_reported_twice_counts_once_in_clicks_and_rage_bursts() -> None:
    # 4 autocaptured clicks, 150 ms apart; the SDK then reports the last one again as dead
    clicks = [ev("s", 1000 + i * 150, "click", i, click=Click(1000 + i * 150, "#buy", x=10, y=10)) for i in range(4)]
    out = run([ev("s", 0, "pageview", page="/"), *clicks, dead_report(1450, "#buy", 9)])
    [session] = out.sessions
    assert (session.clicks, session.rage_clicks, session.dead_clicks) == (4, 1, 1)
    assert [r.rage.clicks for r in out.rage_clicks] == [4]
    assert [(d.ts_ms, d.selector) for d in out.dead_clicks] == [(1450, "#buy")]
    assert out.page_views[0].clicks == 4


def test_the_report_may_come_first_and_both_orders_agree() -> None:
    first = run([ev("s", 0, "pageview", page="/"), dead_report(1000, "#promo", 1),
                 ev("s", 1000, "click", 2, click=Click(1000, "#promo", x=10, y=10))])
    [session] = first.sessions
    assert (session.clicks, session.dead_clicks) == (1, 1)


def test_clicks_that_are_not_the_same_click_still_count() -> None:
    out = run([ev("s", 0, "pageview", page="/"),
               ev("s", 1000, "click", 1, click=Click(1000, "#a", x=10, y=10)),
               dead_report(1000, "#b", 2),                                        # another element
               dead_report(1100, "#a", 3),                                        # 100 ms later: a second click
               ev("s", 1120, "click", 4, click=Click(1120, "#a", x=10, y=10, observed=True, observed_for_ms=3000))])
    [session] = out.sessions
    # #a@1000 and #b; #a@1100 (observed); #a@1120 is both observed with the previous: a real second click
    assert session.clicks == 4 and session.dead_clicks == 3
