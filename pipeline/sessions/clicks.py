"""Rage clicks and dead clicks: pure decisions over clicks in event-time order.

Rage click (product spec): 3+ clicks on the same element, each within 1000 ms of the previous one
and within 30 px (Manhattan distance) of it; one rage click per burst. Both bounds are inclusive:
999 ms and 1000 ms continue a burst, 1001 ms starts a new one; 30 px continues, 31 px does not.
A click on another element ends the burst. Clicks without coordinates are compared by element only.

Dead click: the SDK watches what follows a click and reports it in ``observed``; the pipeline
decides. A click is dead when the SDK sent an observation and saw **no navigation, no scroll, and
no DOM mutation within ``window_ms``** (default 2500 ms): ``dom_mutation_ms`` is null or greater
than the window. If the SDK watched for less than the window (``observed_for_ms`` < window, e.g.
the page unloaded), or sent no observation at all, the click is undecidable and not counted.
The kind tells interactive targets (``unresponsive``: a button that did nothing) from
non-interactive ones (``non_interactive``: text or an image that looks clickable).

One click, two reports: an SDK may report a click at once and its observation later as another
event (posthog-js: ``$autocapture``, then ``$dead_click`` for the same click). Two clicks on the
same element within ``SAME_CLICK_MS`` of each other, exactly one of them with an observation, are
one click (``same_click``): counted once, in rage bursts too, and judged dead by the observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(slots=True)  # not frozen: built per click event, and frozen __init__ is several times slower
class Click:
    ts_ms: int
    selector: str
    page: str = ""
    x: float | None = None
    y: float | None = None
    interactive: bool | None = None
    observed: bool = False
    dom_mutation_ms: float | None = None
    navigated: bool = False
    scrolled: bool = False
    observed_for_ms: float | None = None


@dataclass(frozen=True, slots=True)
class RageClick:
    selector: str
    page: str
    first_ts_ms: int
    detected_ts_ms: int  # the third click: when it became a rage click
    clicks: int  # clicks in the burst (final once the burst has ended)


@dataclass(frozen=True, slots=True)
class RageClickRule:
    min_clicks: int = 3
    max_gap_ms: int = 1000
    max_distance_px: float = 30.0


@dataclass(frozen=True, slots=True)
class DeadClickRule:
    window_ms: float = 2500.0


DeadKind = Literal["unresponsive", "non_interactive"]
SAME_CLICK_MS = 50  # humans do not click the same element twice this fast; two reports of one click do


def same_click(click: Click, last: Click | None) -> bool:
    """``click`` is another report of ``last`` (see the module docstring)."""
    return (last is not None and last.observed != click.observed and last.selector == click.selector
            and abs(click.ts_ms - last.ts_ms) <= SAME_CLICK_MS)


def merge_observation(into: Click, report: Click) -> None:
    """Give ``into`` the observation ``report`` carries (if it has one): the click is then observed."""
    if report.observed and not into.observed:
        into.observed, into.dom_mutation_ms, into.navigated = True, report.dom_mutation_ms, report.navigated
        into.scrolled, into.observed_for_ms = report.scrolled, report.observed_for_ms
        into.interactive = into.interactive if into.interactive is not None else report.interactive


def dead_click_kind(click: Click, rule: DeadClickRule = DeadClickRule()) -> DeadKind | None:
    """None when the click had an effect or cannot be decided; see the module docstring."""
    if not click.observed:
        return None
    if click.observed_for_ms is not None and click.observed_for_ms < rule.window_ms:
        return None
    if click.navigated or click.scrolled:
        return None
    if click.dom_mutation_ms is not None and click.dom_mutation_ms <= rule.window_ms:
        return None
    return "non_interactive" if click.interactive is False else "unresponsive"


class RageClickDetector:
    """Feed clicks of one session in event-time order; one ``RageClick`` comes out per burst.

    ``feed`` returns the rage click when a burst reaches ``min_clicks`` (its count then is the
    minimum); ``burst_ended`` returns the final count once the next click or ``close`` ends it.

    >>> d = RageClickDetector()
    >>> [d.feed(Click(t, "#pay", x=10, y=10)) for t in (0, 500, 1000)][-1].clicks
    3
    """

    __slots__ = ("rule", "_last", "_count", "_first_ts", "_detected_ts")

    @property
    def last(self) -> Click | None:
        """The last click fed (kept across bursts until ``close``)."""
        return self._last

    def __init__(self, rule: RageClickRule = RageClickRule()) -> None:
        self.rule = rule
        self._last: Click | None = None
        self._count = 0
        self._first_ts = 0
        self._detected_ts = 0

    def _continues(self, click: Click) -> bool:
        last = self._last
        if last is None or click.selector != last.selector or click.ts_ms - last.ts_ms > self.rule.max_gap_ms:
            return False
        if click.x is None or click.y is None or last.x is None or last.y is None:
            return True
        return abs(click.x - last.x) + abs(click.y - last.y) <= self.rule.max_distance_px

    def feed(self, click: Click) -> tuple[RageClick | None, RageClick | None]:
        """Returns (newly detected rage click, rage click whose burst just ended with its final count)."""
        ended = None
        rule = self.rule
        last = self._last
        # _continues(click), inlined: this runs for every click
        if (last is not None and click.selector == last.selector and click.ts_ms - last.ts_ms <= rule.max_gap_ms
                and (click.x is None or click.y is None or last.x is None or last.y is None
                     or abs(click.x - last.x) + abs(click.y - last.y) <= rule.max_distance_px)):
            self._count += 1
        else:
            if last is not None and self._count >= rule.min_clicks:  # _close(), inlined
                ended = self._rage(last)
            self._count, self._first_ts = 1, click.ts_ms
        self._last = click
        if self._count == rule.min_clicks:
            self._detected_ts = click.ts_ms
            return self._rage(click), ended
        return None, ended

    def close(self) -> RageClick | None:
        """End the current burst (session closed); its rage click with the final count, if any."""
        ended = self._close()
        self._last, self._count = None, 0
        return ended

    def _close(self) -> RageClick | None:
        if self._last is not None and self._count >= self.rule.min_clicks:
            return self._rage(self._last)
        return None

    def _rage(self, click: Click) -> RageClick:
        return RageClick(selector=click.selector, page=click.page, first_ts_ms=self._first_ts,
                         detected_ts_ms=self._detected_ts, clicks=self._count)


def detect_rage_clicks(clicks: list[Click], rule: RageClickRule = RageClickRule()) -> list[RageClick]:
    """All rage clicks of one session's clicks (sorted by time), each with its burst's final count."""
    detector = RageClickDetector(rule)
    out = []
    for click in sorted(clicks, key=lambda c: c.ts_ms):
        _, ended = detector.feed(click)
        if ended:
            out.append(ended)
    last = detector.close()
    if last:
        out.append(last)
    return out
