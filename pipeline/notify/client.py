"""A small client of the notifier's HTTP API, for ``pulse notify ...`` (stdlib only)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from pipeline.settings import Settings


class NotifierApiError(Exception):
    """The notifier answered with an error, or could not be reached; the message says which."""


def base_url(settings: Settings) -> str:
    host = settings.notifier.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.notifier.port}"


def call(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None, *,
         url: str | None = None, timeout_s: float = 10.0) -> Any:
    """``method path`` on the notifier; the decoded JSON answer, or ``NotifierApiError``."""
    target = (url or base_url(settings)).rstrip("/") + path
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    token = settings.collector.api_token
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    request = urllib.request.Request(target, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = orjson.loads(raw).get("error") or raw.decode(errors="replace")
        except (orjson.JSONDecodeError, AttributeError):
            message = raw.decode(errors="replace")[:500]
        raise NotifierApiError(f"{exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifierApiError(f"the notifier at {target} is not reachable ({reason}); is `pulse notifier` running?"
                               ) from None
    return orjson.loads(raw) if raw.strip() else None


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
