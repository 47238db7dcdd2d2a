"""Helpers shared by the collector, the worker's ingest step, sessions and rollups: an event's page,
exact epoch times, and browser/OS from a user agent.

A leaf: it imports nothing from the project (tests/unit/test_layering.py holds that line), so any
layer can use it without pulling in another; before, sessions and rollups imported these from
``pipeline.ingest.normalize``, and with it the contract and error grouping. Pure, except for the
user agent cache.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from urllib.parse import urlsplit

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def page_of(route: str | None, url: str | None) -> str:
    """The page an event belongs to: its route pattern (``/product/:id``), else its URL's path.
    Sessions and rollups both group by it, so both call this."""
    if route:
        return route
    if url:
        try:
            return urlsplit(url).path or "/"
        except ValueError:
            return ""
    return ""


def epoch_us(ts: datetime) -> int:
    """Exact integer microseconds since the epoch of an aware datetime (no float rounding): the
    worker computes it once per event and derives the minute, the lateness and the time window check."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def epoch_ms(ts: datetime) -> int:
    """Exact integer milliseconds (no float rounding: 999 ms apart stays 999)."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of exact epoch milliseconds (``epoch_ms``'s inverse)."""
    return EPOCH + timedelta(milliseconds=ms)


@lru_cache(maxsize=4096)
def browser_and_os(user_agent: str) -> tuple[str, str, str, str]:
    """(browser, browser major version, OS, device) by uap-core's regexes (``ua-parser``), cached;
    empty strings for an empty user agent."""
    if not user_agent:
        return "", "", "", ""
    from ua_parser import parse  # imported lazily: loading the regexes takes a moment

    r = parse(user_agent)
    ua, os_, device = r.user_agent, r.os, r.device
    return (ua.family if ua else "Other", (ua.major or "") if ua else "", os_.family if os_ else "Other",
            device.family if device else "")
