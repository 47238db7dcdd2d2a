"""Inbound filters: events a project chose not to keep, dropped at the collector. Pure.

Like Sentry's inbound filters, they are decisions, not errors: a filtered event is counted
(``pulse_filtered_events_total{reason}``) and answered as accepted, never dead-lettered.

* ``web-crawler``: the user agent is a bot (uap-core's device family ``Spider``: Googlebot, Bingbot,
  headless crawlers that say so...). On by default.
* ``localhost``: the page URL's host is localhost, a ``*.localhost`` name or a loopback address.
* ``legacy-browser``: Internet Explorer, or a browser older than ``LEGACY_BELOW``.
* ``browser-extension``: an error with a frame from a browser extension's script. Off by default,
  because the grouping step already keeps those out of issues and rates (``noise``) while storing
  them; turn it on to drop them instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipeline.grouping.noise import EXTENSION_SCHEMES
from pipeline.common import browser_and_os

# Oldest major version still "modern" per family (older ones lack ES2017 and are rarely real users).
LEGACY_BELOW: dict[str, int] = {"Chrome": 70, "Chrome Mobile": 70, "Firefox": 65, "Firefox Mobile": 65,
                                "Safari": 12, "Mobile Safari": 12, "Edge": 79, "Opera": 60, "Samsung Internet": 10}
LEGACY_FAMILIES = frozenset({"IE", "IE Mobile"})


@dataclass(frozen=True)
class InboundFilters:
    web_crawlers: bool = True
    localhost: bool = False
    legacy_browsers: bool = False
    browser_extensions: bool = False

    @property
    def any(self) -> bool:
        return self.web_crawlers or self.localhost or self.legacy_browsers or self.browser_extensions


def _is_local(url: str) -> bool:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_legacy(family: str, major: str) -> bool:
    if family in LEGACY_FAMILIES:
        return True
    floor = LEGACY_BELOW.get(family)
    return floor is not None and major.isdigit() and int(major) < floor


def filter_reason(event: Any, filters: InboundFilters) -> str | None:
    """Why this event (a dict, before validation) is filtered, or None to keep it."""
    if not isinstance(event, dict) or not filters.any:
        return None
    ua = event.get("user_agent")
    if isinstance(ua, str) and ua and (filters.web_crawlers or filters.legacy_browsers):
        family, major, _, device = browser_and_os(ua)
        if filters.web_crawlers and device == "Spider":
            return "web-crawler"
        if filters.legacy_browsers and _is_legacy(family, major):
            return "legacy-browser"
    url = event.get("url")
    if filters.localhost and isinstance(url, str) and _is_local(url):
        return "localhost"
    if filters.browser_extensions and event.get("type") == "error":
        frames = (event.get("error") or {}).get("stacktrace") if isinstance(event.get("error"), dict) else None
        for frame in frames or ():
            name = frame.get("filename") if isinstance(frame, dict) else None
            if isinstance(name, str) and name.strip().lower().startswith(EXTENSION_SCHEMES):
                return "browser-extension"
    return None
