"""Server-side scrubbing: secrets and personal data never reach a topic. Pure: no I/O, no clock.

What is filtered, in text:
  * card numbers: runs of 13-19 digits (single spaces or dashes allowed between digits) that start
    like a card (2-6) and pass the Luhn check -> ``[Filtered]``. The Luhn check and the leading
    digit keep order ids and epoch milliseconds (they start with 1) intact.
  * e-mail addresses -> ``[email]``.
  * ``Bearer <token>`` -> ``Bearer [Filtered]``.
  * IPv4 addresses -> ``[ip]`` (Relay's default; four dotted numbers up to 255, so a four-part
    version number goes too: over-filtering is the safe mistake).
  * ``key=value``, ``key: value``, ``"key": "value"`` and URL query parameters whose key looks
    secret (see ``is_sensitive_key``) -> the value becomes ``[Filtered]``.

In an event dict (``scrub_event``): error message, stack frames' source lines and file URLs,
breadcrumb messages and data, tag values, the
page url, the api url, action text and action properties, metric tags. Inside breadcrumb data, tags and
properties, a value under a sensitive key is replaced whole, whatever its type.

Every replacement is a fixed point (scrubbing twice equals scrubbing once), so the collector and
a producer may both scrub without harm.

Example::

    >>> scrub_text("card 4111 1111 1111 1111, mail ann@example.com, /cb?token=abc&x=1")
    'card [Filtered], mail [email], /cb?token=[Filtered]&x=1'
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

FILTERED = "[Filtered]"
EMAIL = "[email]"
IP = "[ip]"

# Nested data deeper than this is not walked (recursion must stay bounded); it is filtered whole
# because data we did not inspect must not pass.
MAX_DEPTH = 20

_SENSITIVE_WORDS = r"passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|auth|credential|cookie|session"
_SENSITIVE_KEY = re.compile(_SENSITIVE_WORDS, re.IGNORECASE)
_SENSITIVE_KEY_LOWER = re.compile(_SENSITIVE_WORDS)  # on lowered text: much faster than IGNORECASE

# Cards: a run of digit blocks joined by single spaces or dashes; ASCII digits only.
_CARD_CANDIDATE = re.compile(r"\d(?:[ -]?\d){12}", re.ASCII)
_NUMBER_RUN = re.compile(r"\d+(?:[ -]\d+)*", re.ASCII)
_DIGIT_BLOCK = re.compile(r"\d+", re.ASCII)

# The lookbehind makes matches start only at the beginning of a run, which keeps the scan linear
# on hostile input (a long run of word characters with no '@' after it).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])",
                   re.ASCII)

_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)

# key (optionally quoted) then = or :, then a quoted value, or an unquoted one up to a delimiter.
# An auth scheme word in front of the value ("Authorization: Basic xyz") goes with the value.
_KEY_VALUE = re.compile(
    r"(?<![\w-])(?P<key>[\w-]*(?:" + _SENSITIVE_WORDS + r")[\w-]*[\"']?\s*[=:]\s*)"
    r"(?P<value>(?:(?:bearer|basic|token|digest)\s+)?(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|[^\s&,;\"'#]+))",
    re.IGNORECASE,
)


def luhn_ok(digits: str) -> bool:
    """The checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_sub(m: re.Match[str]) -> str:
    """Filter every card inside one number run ("order 12 4111 1111 1111 1111").

    A card is whole blocks (never part of a block: that would find Luhn-valid slices in any long
    number), 13-19 digits, starting with 2-6. From each block, left to right, the longest valid
    window wins. Trying every start (not just the run's first) finds a card after a stray number
    and keeps the result a fixed point.
    """
    text = m.group(0)
    blocks = [(b.start(), b.end()) for b in _DIGIT_BLOCK.finditer(text)]
    out: list[str] = []
    pos = i = 0
    while i < len(blocks):
        found = -1
        if text[blocks[i][0]] in "23456":
            digits = ""
            for j in range(i, len(blocks)):
                digits += text[blocks[j][0]:blocks[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_ok(digits):
                    found = j
        if found < 0:
            i += 1
            continue
        out += [text[pos:blocks[i][0]], FILTERED]
        pos, i = blocks[found][1], found + 1
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _key_value_sub(m: re.Match[str]) -> str:
    if m.group("dq") is not None:
        return f'{m.group("key")}"{FILTERED}"'
    if m.group("sq") is not None:
        return f"{m.group('key')}'{FILTERED}'"
    return m.group("key") + FILTERED


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Sentry-style substring match: 'user_password', 'X-Auth-Token', 'sessionid', 'api-key'.

    Substrings over-match ('author'); for a scrubber, filtering too much is the safe mistake.
    """
    return _SENSITIVE_KEY.search(key) is not None


# Page URLs, messages and breadcrumbs repeat across a session's events; short strings are scrubbed
# once and remembered (scrubbing is a pure function of the text).
_CACHED_MAX_LEN = 1024


def scrub_text(s: str, keep_ips: bool = False) -> str:
    """Scrub one string. Each pattern runs only when a cheap check finds a candidate.
    ``keep_ips``: leave IP addresses (``PULSE_COLLECTOR_SCRUB_IP_ADDRESSES=false``)."""
    if not s:
        return s
    if len(s) <= _CACHED_MAX_LEN:
        return _scrub_text_cached(s, keep_ips)
    return _scrub_text(s, keep_ips)


@lru_cache(maxsize=16384)
def _scrub_text_cached(s: str, keep_ips: bool) -> str:
    return _scrub_text(s, keep_ips)


def _scrub_text(s: str, keep_ips: bool = False) -> str:
    if _CARD_CANDIDATE.search(s):
        s = _NUMBER_RUN.sub(_card_sub, s)
    if "@" in s:
        s = _EMAIL.sub(EMAIL, s)
    if not keep_ips and s.count(".") >= 3:
        s = _IPV4.sub(IP, s)
    if ("=" in s or ":" in s) and _SENSITIVE_KEY_LOWER.search(s.lower()):
        s = _KEY_VALUE.sub(_key_value_sub, s)
    if " " in s or "\t" in s or "\n" in s:
        if "earer" in s or "EARER" in s:
            s = _BEARER.sub(lambda m: m.group(1) + FILTERED, s)
    return s


def scrub_value(value: Any, depth: int = 0, keep_ips: bool = False) -> Any:
    """Strings scrubbed, containers walked; values under sensitive keys replaced whole."""
    if isinstance(value, str):
        return scrub_text(value, keep_ips)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return FILTERED
        return {k: (FILTERED if isinstance(k, str) and is_sensitive_key(k) else scrub_value(v, depth + 1, keep_ips))
                for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return FILTERED
        return [scrub_value(v, depth + 1, keep_ips) for v in value]
    return value


def _scrub_str_field(d: dict[str, Any], name: str, keep_ips: bool) -> None:
    v = d.get(name)
    if isinstance(v, str):
        d[name] = scrub_text(v, keep_ips)


def _scrub_breadcrumb(crumb: Any, keep_ips: bool) -> Any:
    if not isinstance(crumb, dict):
        return crumb
    crumb = dict(crumb)
    _scrub_str_field(crumb, "message", keep_ips)
    if "data" in crumb:
        crumb["data"] = scrub_value(crumb["data"], 0, keep_ips)
    return crumb


def _scrub_frame(frame: Any, keep_ips: bool) -> Any:
    if not isinstance(frame, dict):
        return frame
    frame = dict(frame)
    _scrub_str_field(frame, "context_line", keep_ips)
    _scrub_str_field(frame, "filename", keep_ips)
    return frame


USER_IDENTIFIERS = ("user_id", "anonymous_id")
_NO = frozenset({"false", "0", "no", "off", "f", "n"})


def withheld_consent(value: Any) -> bool:
    """The event's ``consent`` says no, in any spelling the contract's bool accepts."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value == 0
    return isinstance(value, str) and value.strip().lower() in _NO


def scrub_event(item: Any, keep_ips: bool = False) -> Any:
    """Scrub one event dict before validation. Never mutates its input: returns a new top-level
    dict (and new copies of every nested part it changes), so a caller's dicts stay intact and the
    result may be mutated freely at the top level. Non-dicts are returned as they are (validation
    rejects them).
    """
    if not isinstance(item, dict):
        return item
    out = dict(item)
    if withheld_consent(out.get("consent")):
        # Without consent no user identifiers are kept, not even in the raw topic or a dead letter.
        for key in USER_IDENTIFIERS:
            if out.get(key) is not None:
                out[key] = None
    v = out.get("url")
    if isinstance(v, str):
        out["url"] = scrub_text(v, keep_ips)
    # Only the payload the event's type names can be present in a valid event; the others are
    # scrubbed too when present, because invalid events end up in the dead-letter topic as well.
    err = out.get("error")
    if isinstance(err, dict):
        err = out["error"] = dict(err)
        _scrub_str_field(err, "message", keep_ips)
        crumbs = err.get("breadcrumbs")
        if isinstance(crumbs, list):
            err["breadcrumbs"] = [_scrub_breadcrumb(c, keep_ips) for c in crumbs]
        if "tags" in err:
            err["tags"] = scrub_value(err["tags"], 0, keep_ips)
        frames = err.get("stacktrace")
        if isinstance(frames, list):  # source lines (literals in code) and script URLs (query strings)
            err["stacktrace"] = [_scrub_frame(f, keep_ips) for f in frames]
    api = out.get("api")
    if isinstance(api, dict):
        v = api.get("url")
        if isinstance(v, str):
            api = out["api"] = dict(api)
            api["url"] = scrub_text(v, keep_ips)
    action = out.get("action")
    if isinstance(action, dict):
        text = action.get("text")
        if isinstance(text, str) or "properties" in action:
            action = out["action"] = dict(action)
            if isinstance(text, str):
                action["text"] = scrub_text(text, keep_ips)
            if "properties" in action:
                action["properties"] = scrub_value(action["properties"], 0, keep_ips)
    metric = out.get("metric")
    if isinstance(metric, dict) and "tags" in metric:
        metric = out["metric"] = dict(metric)
        metric["tags"] = scrub_value(metric["tags"], 0, keep_ips)
    return out
