"""Sending one rendered notification (``payloads.Outgoing``): HTTP POST with aiohttp, e-mail with
``smtplib`` in a worker thread. The result says what happened; the retry decision is the caller's
(``decide``, which applies ``payloads.retry_after_seconds``).

HTTP: 2xx/3xx is delivered; 429 and 503 honour ``Retry-After``; other 5xx, timeouts and connection
errors back off exponentially; any other 4xx is a permanent failure (the request itself is wrong).
SMTP: a 4xx reply, a timeout or a dropped connection is retried; a 5xx reply (bad recipient,
authentication refused, message rejected) is permanent. Port 465 uses implicit TLS, otherwise
``starttls`` decides; the password comes from the environment variable ``password_env``.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from pipeline.notify.config import EmailConfig
from pipeline.notify.payloads import Outgoing, retry_after_seconds

MAX_ERROR_BODY = 300  # characters of a receiver's error answer kept in logs and the outbox


@dataclass(frozen=True)
class SendResult:
    """``status``: the HTTP status (or the SMTP reply code of a refusal); None when there was no answer
    (timeout, connection error). ``permanent``: known not to succeed on a retry."""

    ok: bool
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    permanent: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: str  # delivered | retry | failed
    retry_in_s: float | None = None


def decide(result: SendResult, attempts: int, now_ms: int) -> Decision:
    """What to do after attempt number ``attempts`` (1 after the first)."""
    if result.ok:
        return Decision("delivered")
    if result.permanent:
        return Decision("failed")
    wait = retry_after_seconds(result.status, result.headers, attempts, now_ms=now_ms)
    return Decision("failed") if wait is None else Decision("retry", wait)


async def send_http(session: aiohttp.ClientSession, out: Outgoing, timeout_s: float) -> SendResult:
    try:
        async with session.post(out.url, data=orjson.dumps(out.json), headers=out.headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.content.read(4096)
            headers = {k: v for k, v in resp.headers.items()}
            if resp.status < 400:
                return SendResult(True, resp.status, headers)
            text = body.decode(errors="replace").strip()[:MAX_ERROR_BODY]
            return SendResult(False, resp.status, headers, f"HTTP {resp.status}" + (f": {text}" if text else ""))
    except asyncio.TimeoutError:
        return SendResult(False, None, error=f"no answer within {timeout_s:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return SendResult(False, None, error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_BODY])


def _smtp_send(out: Outgoing, timeout_s: float) -> SendResult:
    cfg: EmailConfig | None = out.smtp
    if cfg is None or out.email is None:
        return SendResult(False, error="not an e-mail", permanent=True)
    password = None
    if cfg.username:
        password = os.environ.get(cfg.password_env) if cfg.password_env else None
        if password is None:
            return SendResult(False, error=f"receiver {out.receiver}: username set but the password variable "
                                           f"{cfg.password_env or '(password_env)'} is not set", permanent=True)
    try:
        if cfg.smtp_port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=timeout_s,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout_s)
        with smtp:
            smtp.ehlo()
            if cfg.starttls and cfg.smtp_port != 465:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if cfg.username and password is not None:
                smtp.login(cfg.username, password)
            refused = smtp.send_message(out.email)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return SendResult(False, max(codes, default=None), error=f"recipients refused: {exc.recipients}"[:MAX_ERROR_BODY],
                          permanent=all(c >= 500 for c in codes))
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return SendResult(False, exc.smtp_code, error=f"SMTP {exc.smtp_code}: {text}"[:MAX_ERROR_BODY],
                          permanent=exc.smtp_code >= 500)
    except smtplib.SMTPNotSupportedError as exc:
        return SendResult(False, error=f"SMTP server: {exc}"[:MAX_ERROR_BODY], permanent=True)
    except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections
        return SendResult(False, error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_BODY])
    if refused:  # some recipients took it: delivered; say who did not
        return SendResult(True, 250, error=f"refused by some recipients: {refused}"[:MAX_ERROR_BODY])
    return SendResult(True, 250)


async def send_email(out: Outgoing, timeout_s: float) -> SendResult:
    return await asyncio.to_thread(_smtp_send, out, timeout_s)


async def send(session: aiohttp.ClientSession, out: Outgoing, timeout_s: float) -> SendResult:
    if out.transport == "smtp":
        return await send_email(out, timeout_s)
    return await send_http(session, out, timeout_s)
