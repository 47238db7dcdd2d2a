"""Known noise: errors a frontend monitor should drop before they become issues.

Pure: stdlib only, no I/O. :func:`noise_reason` names why an error is noise, or returns None.

Example::

    noise_reason("Error", "ResizeObserver loop limit exceeded", [])  # 'resize-observer-loop'
    noise_reason("TypeError", "x is undefined", frames_from_dicts([{"filename": "chrome-extension://abc/c.js"}]))
    # 'browser-extension'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.grouping.fingerprint import FrameLike

__all__ = ["DEFAULT_NOISE_RULES", "EXTENSION_SCHEMES", "NoiseRules", "noise_reason"]

EXTENSION_SCHEMES: tuple[str, ...] = (
    "chrome-extension://", "moz-extension://", "safari-extension://", "safari-web-extension://",
    "ms-browser-extension://",
    "webkit-masked-url://",  # Safari hides extension script URLs behind this scheme
)
RESIZE_OBSERVER_MESSAGES: tuple[str, ...] = (
    "ResizeObserver loop limit exceeded",  # Chrome < 118
    "ResizeObserver loop completed with undelivered notifications",  # Chrome >= 118, Firefox, Safari
)
SCRIPT_ERROR_MESSAGES = frozenset({"script error.", "script error"})


@dataclass(frozen=True)
class NoiseRules:
    """Which known noise to drop. All rules are on by default except the optional ones noted."""

    drop_browser_extensions: bool = True
    """A frame from a browser extension's script (``chrome-extension://``, ``moz-extension://``, ...):
    someone else's code running on the page, not the app's bug -> ``browser-extension``."""
    drop_resize_observer: bool = True
    """The benign ResizeObserver loop warnings browsers report through ``window.onerror``
    -> ``resize-observer-loop``."""
    drop_script_error_without_stack: bool = True
    """``Script error.`` with no frames: a cross-origin script's error, with every detail hidden by the
    browser (no ``crossorigin`` attribute); nothing to group or act on -> ``script-error-no-stack``."""
    ignored_messages: tuple[str, ...] = ()
    """Optional: case-sensitive substrings of messages the project wants dropped (e.g. a known third-party
    widget's error) -> ``ignored-message``. Empty strings are ignored."""
    ignored_exception_types: tuple[str, ...] = ()
    """Optional: exception types dropped outright (e.g. ``AbortError`` when cancelled fetches are expected)
    -> ``ignored-type``."""


DEFAULT_NOISE_RULES = NoiseRules()


def _get(frame: Any, name: str) -> Any:
    return frame.get(name) if isinstance(frame, Mapping) else getattr(frame, name, None)


def _has_frames(frames: Sequence[Any]) -> bool:
    """A frame counts when it names a file or a function; empty placeholder frames do not."""
    return any(_get(f, "filename") or _get(f, "function") for f in frames)


def _from_extension(frames: Sequence[Any]) -> bool:
    for frame in frames:
        filename = (_get(frame, "filename") or "").strip().lower()
        if filename.startswith(EXTENSION_SCHEMES):
            return True
    return False


def noise_reason(exception_type: str, message: str, frames: Sequence[FrameLike],
                 rules: NoiseRules = DEFAULT_NOISE_RULES) -> str | None:
    """Why this error is known noise to filter (a short reason), or None to keep it.

    Reasons: ``browser-extension``, ``resize-observer-loop``, ``script-error-no-stack``,
    ``ignored-type``, ``ignored-message``; see :class:`NoiseRules`. ``frames`` as for grouping
    (objects with a ``filename`` attribute, or dicts)."""
    message = message or ""
    if rules.drop_script_error_without_stack and message.strip().lower() in SCRIPT_ERROR_MESSAGES \
            and not _has_frames(frames):
        return "script-error-no-stack"
    if rules.drop_resize_observer and any(m in message for m in RESIZE_OBSERVER_MESSAGES):
        return "resize-observer-loop"
    if rules.drop_browser_extensions and _from_extension(frames):
        return "browser-extension"
    if (exception_type or "").strip() in rules.ignored_exception_types:
        return "ignored-type"
    if any(s and s in message for s in rules.ignored_messages):
        return "ignored-message"
    return None
