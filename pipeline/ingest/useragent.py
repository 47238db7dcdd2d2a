"""Browser, OS and device from a user agent (uap-core's regexes through ``ua-parser``), cached."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def browser_and_os(user_agent: str) -> tuple[str, str, str, str]:
    """(browser, browser major version, OS, device); empty strings for an empty user agent."""
    if not user_agent:
        return "", "", "", ""
    from ua_parser import parse  # imported lazily: loading the regexes takes a moment

    r = parse(user_agent)
    ua, os_, device = r.user_agent, r.os, r.device
    return (ua.family if ua else "Other", (ua.major or "") if ua else "", os_.family if os_ else "Other",
            device.family if device else "")
