"""Error grouping: which events are "the same error" (one issue), Sentry-like.

Pure: stdlib only, no I/O. Events with the same :attr:`Grouping.fingerprint` belong to one issue.

The rules, first match wins:

1. **sdk** - the SDK sent ``fingerprint``: its values are hashed as they are (with the project);
   the special value ``{{ default }}`` expands to the components of the default grouping below.
2. **chunk-load** - a ``ChunkLoadError``, or a message like ``Loading chunk 42 failed`` /
   ``Loading CSS chunk 7 failed``, is one group per project whatever the chunk or stack
   (method ``message``): it is one deploy problem, not one bug per chunk.
3. **stacktrace** - the in-app frames (outermost first) that have a usable function or file: per
   frame, the module or the file's base name without query string and content hash, and the
   function name (the normalized source line when the function is unknown); then the exception
   type. Line and column numbers never take part, so a rebuild or an edit elsewhere in the file
   keeps the issue; vendor (not in-app) frames never take part either.
4. **message** - no usable in-app frame: the exception type and the normalized message
   (:func:`normalize_message`).

Example::

    g = group_error("TypeError", "Cannot read properties of undefined (reading 'price')", frames)
    g.method, g.title, g.culprit
    # ('stacktrace', "TypeError: Cannot read properties of undefined (reading 'price')",
    #  'renderTotal (checkout.js)')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, Protocol

__all__ = [
    "DEFAULT_VARIABLE", "Frame", "FrameLike", "Grouping", "default_components", "frames_from_dicts",
    "group_error", "is_chunk_load_error", "normalize_context_line", "normalize_filename",
    "normalize_function", "normalize_message",
]

DEFAULT_VARIABLE = "{{ default }}"
"""In an SDK fingerprint, stands for the components of the default grouping."""

TITLE_MAX = 200
MESSAGE_MAX = 512
CONTEXT_LINE_MAX = 120  # longer source lines are minified bundles: useless (and unstable) for grouping


class FrameLike(Protocol):
    """What grouping reads from a stack frame; :class:`pipeline.contract.StackFrame` qualifies."""

    @property
    def filename(self) -> str | None: ...
    @property
    def function(self) -> str | None: ...
    @property
    def module(self) -> str | None: ...
    @property
    def in_app(self) -> bool: ...
    @property
    def context_line(self) -> str | None: ...


@dataclass(frozen=True)
class Frame:
    """A plain frame, e.g. from :func:`frames_from_dicts`. ``in_app`` defaults to True as in the contract."""

    filename: str | None = None
    function: str | None = None
    module: str | None = None
    in_app: bool = True
    context_line: str | None = None
    lineno: int | None = None
    colno: int | None = None


def frames_from_dicts(frames: Iterable[Mapping[str, Any]]) -> list[Frame]:
    """Frames as sent on the wire (dicts, outermost first) -> :class:`Frame` objects. Unknown keys are ignored."""
    out = []
    for f in frames:
        in_app = f.get("in_app")
        out.append(Frame(filename=f.get("filename"), function=f.get("function"), module=f.get("module"),
                         in_app=True if in_app is None else bool(in_app), context_line=f.get("context_line"),
                         lineno=f.get("lineno"), colno=f.get("colno")))
    return out


@dataclass(frozen=True)
class Grouping:
    fingerprint: str
    """Hex SHA-1 (40 chars) of ``components``."""
    method: str
    """``sdk``, ``stacktrace`` or ``message``."""
    title: str
    """``"{type}: {first line of the message}"``, at most 200 characters."""
    culprit: str
    """``"function (file)"`` of the innermost in-app frame; ``""`` when there is none."""
    components: tuple[str, ...]
    """The normalized values hashed, e.g. ``('project:shop', 'frame:checkout.js renderTotal', 'type:TypeError')``."""


# ---------------------------------------------------------------- message normalization

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")  # not shop@2.14.0
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"`<>()\[\]{}]*[^\s'\"`<>()\[\]{}.,;:!?]", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.]*\d)")
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = re.compile(
    r"(?<![\w:])(?:"
    r"::ffff:(?:\d{1,3}\.){3}\d{1,3}"  # IPv4-mapped
    rf"|(?:{_H}:){{7}}{_H}"  # full
    rf"|(?=[0-9A-Fa-f:]*[0-9A-Fa-f])(?:{_H}(?::{_H}){{0,6}})?::(?:{_H}(?::{_H}){{0,6}})?"  # compressed, with '::'
    r")(?![\w:])"
)
_HEX = re.compile(
    r"\b0[xX][0-9a-fA-F]+\b"  # hex literal
    r"|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"  # long hex string: digits and letters
)
_QUOTED = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|(?<!\w)\"[^\"\n]*\"(?!\w)|`[^`\n]*`|‘[^’\n]*’|“[^”\n]*”")
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)*(?!\d)")
_SPACE = re.compile(r"\s+")


_MEMO_MAX_CHARS = 1024  # longer inputs (minified one-liners) are rare and would make the cache's memory unbounded


def _memo_short_strings(maxsize: int) -> Any:
    """Remember a pure str -> str normalizer's results for inputs of up to ``_MEMO_MAX_CHARS``: errors
    repeat the same frames and messages (a few dozen families, storms of one), and the regexes cost
    more than the rest of an event's processing (issue 14)."""
    def decorate(fn: Any) -> Any:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def normalize(value: Any) -> Any:
            if type(value) is str and len(value) <= _MEMO_MAX_CHARS:
                return cached(value)
            return fn(value)
        return normalize
    return decorate


@_memo_short_strings(4096)
def normalize_message(message: str) -> str:
    """The message with its variable parts replaced, for grouping messages without a stack.

    Applied in this order (each step sees the result of the previous ones):

    1. UUIDs -> ``<uuid>``:
       ``Order 0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11 not found`` -> ``Order <uuid> not found``
    2. e-mail addresses -> ``<email>``: ``No account for jane.doe+shop@example.com`` -> ``No account for <email>``
    3. URLs (http, https, ws, wss; a trailing ``.`` or ``,`` is not part of it) -> ``<url>``:
       ``Failed to load https://cdn.x.com/a.js?v=3.`` -> ``Failed to load <url>.``
    4. IPv4 and IPv6 addresses -> ``<ip>``: ``connect to 10.0.0.12 failed`` -> ``connect to <ip> failed``;
       ``host fe80::1 down`` -> ``host <ip> down`` (times like ``10:30:00`` are not addresses)
    5. hex literals and hex strings of 8+ characters mixing digits and letters -> ``<hex>``:
       ``bad pointer 0x7ffe`` -> ``bad pointer <hex>``; ``commit 3f9a1c2b4d`` -> ``commit <hex>``
    6. quoted values ('...', "...", `...`, and typographic quotes) -> ``<quoted>``:
       ``Cannot read properties of undefined (reading 'price')`` -> ``... (reading <quoted>)``;
       an apostrophe inside a word is no quote: ``Can't find variable: x`` stays.
    7. numbers (integers, decimals, dotted versions), not when glued after a letter -> ``<num>``:
       ``Loading chunk 42 failed after 1.5s`` -> ``Loading chunk <num> failed after <num>s``;
       ``E1234`` and ``utf8`` stay.

    Then whitespace runs become one space, the ends are stripped, and the result is cut to 512 characters.
    """
    text = _UUID.sub("<uuid>", message)
    text = _EMAIL.sub("<email>", text)
    text = _URL.sub("<url>", text)
    text = _IPV6.sub("<ip>", text)
    text = _IPV4.sub("<ip>", text)
    text = _HEX.sub("<hex>", text)
    text = _QUOTED.sub("<quoted>", text)
    text = _NUMBER.sub("<num>", text)
    return _SPACE.sub(" ", text).strip()[:MESSAGE_MAX]


# ---------------------------------------------------------------- frame normalization

_HEX_TOKEN = re.compile(r"[0-9a-fA-F]{7,}")
_B64_TOKEN = re.compile(r"[A-Za-z0-9_-]{8}")
_LONG_DIGITS = re.compile(r"\d{7,}")
_BUILD_ID = re.compile(r"[A-Za-z0-9_-]{16,}")
_VERSION_DIR = re.compile(r"v?\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?|v\d+", re.IGNORECASE)
_PACKAGE_AT_VERSION = re.compile(r"(.+)@v?\d[\w.+-]*")
_CAMEL_WORD = re.compile(r"[A-Z]?[a-z]+")
_CONSONANT_RUN = re.compile(r"[^aeiouy]{4,}")
_ONSETS = frozenset("bl br ch cl cr dr fl fr gl gn gr kn ph pl pr qu sc sch scr sh shr sk sl sm sn sp spl spr st str "
                    "sw th thr tr tw wh wr".split())
"""Consonant clusters that start English words (``str`` in ``String``); ``Td`` starts none."""
_UNUSABLE_FILES = {"", "<anonymous>", "anonymous", "native", "[native code]", "<unknown>", "unknown", "eval"}
_GENERIC_STEMS = {"index", "page", "layout", "route", "template", "loading", "error", "not-found", "default",
                  "__init__", "mod", "+page", "+layout", "+server", "_layout"}
"""File names that many files of one app share: the parent directory tells them apart."""


def _reads_as_words(token: str) -> bool:
    """``CartItem`` / ``NavLinks`` / ``MyWidget``: camel-case words, each with a vowel, an English onset (the
    consonants before its first vowel) and no run of 4+ consonants. Random base64url rarely passes
    (``DiwrgTda``: ``Td`` starts no word; ``BQxkJaPe``: ``B`` alone)."""
    pieces = [p for p in re.split(r"[-_]", token) if p]
    words = [w.lower() for p in pieces for w in _CAMEL_WORD.findall(p)]
    if "".join(words) != "".join(pieces).lower():
        return False
    for word in words:
        onset = re.match(r"[^aeiouy]*", word)
        if onset is None or onset.group() == word or _CONSONANT_RUN.search(word):
            return False
        if len(onset.group()) > 1 and onset.group() not in _ONSETS:
            return False
    return True


def _looks_like_hash(token: str) -> bool:
    """A bundler's content hash or a build stamp, as opposed to a word.

    - 7+ digits: a timestamp or numeric build id (``app.1701234567.js``); shorter numbers are chunk ids.
    - hex of 7+ characters mixing digits and letters (webpack ``[contenthash]`` cut to 7 or 8, or the 16/20
      default, Parcel), or 16+ hex characters whatever they mix.
    - exactly 8 base64url characters (Vite/Rollup ``[hash]``, esbuild base32): with digits and letters; or
      letters in upper case only (esbuild); or mixed case that does not read as camel-case words.
      Lower-case-only letters (with ``-``/``_``) are words: ``settings``, ``get-user``.
    """
    if _LONG_DIGITS.fullmatch(token):
        return True
    if _HEX_TOKEN.fullmatch(token):
        has_digit = any(c.isdigit() for c in token)
        if (has_digit and any(c.isalpha() for c in token)) or len(token) >= 16:
            return True
    if not _B64_TOKEN.fullmatch(token):
        return False
    letters = re.sub(r"[^A-Za-z]", "", token)
    if any(c.isdigit() for c in token):
        return bool(letters)
    if not letters:
        return False
    if letters.isupper():
        return len(letters) >= 6  # esbuild base32: 'QJVHMXEA'; 'API_DOC' is not 8 letters
    if letters.islower():
        return False  # 'settings', 'get-user': words
    return not _reads_as_words(token)


def _strip_hash_from_stem(stem: str) -> str:
    """``app-Dx8Kq2a1`` / ``_app-3f9a1b2c4d5e6f70`` / ``main.8f3a2c1`` -> the name; a stem that is only a hash
    (``[contenthash].js``) -> ``<hash>``."""
    hex_suffix = re.fullmatch(r"(.+?)[-_.]([0-9a-fA-F]{7,})", stem)
    if hex_suffix and _looks_like_hash(hex_suffix.group(2)):
        return hex_suffix.group(1)
    b64_suffix = re.fullmatch(r"(.+?)[-.]([A-Za-z0-9_-]{8})", stem)
    if b64_suffix and _looks_like_hash(b64_suffix.group(2)):
        return b64_suffix.group(1)
    return "<hash>" if _looks_like_hash(stem) else stem


def _is_volatile_directory(name: str) -> bool:
    """A directory that changes per release: ``v1.4.2``, ``1.4.2``, a hash, a Next.js build id."""
    if _VERSION_DIR.fullmatch(name) or _looks_like_hash(name):
        return True
    return bool(_BUILD_ID.fullmatch(name)) and any(c.isdigit() for c in name) and not name.islower()


def _stable_parent(directories: Sequence[str]) -> str:
    """The nearest directory that is not release-specific (``react@18.2.0`` -> ``react``)."""
    for name in reversed(directories):
        if not name or name in {".", ".."} or _is_volatile_directory(name):
            continue
        at_version = _PACKAGE_AT_VERSION.fullmatch(name)
        return at_version.group(1) if at_version else name
    return ""


@_memo_short_strings(4096)
def normalize_filename(filename: str | None) -> str:
    """The file's name, stable across releases: no origin, query string, fragment, content hash or version.

    ``https://cdn.x.com/static/js/main.3f9a1c2b.chunk.js?v=2`` -> ``main.chunk.js``;
    ``/assets/app-Dx8Kq2a1.js`` -> ``app.js``; ``chunk-5XRF2ZQ7.js`` -> ``chunk.js``;
    ``/_next/static/chunks/pages/_app-3f9a1b2c4d5e6f70.js`` -> ``_app.js``;
    ``webpack:///./src/checkout.js`` -> ``checkout.js``. Only the base name is kept, except for names that
    many files share (``index``, ``page``, ``layout``, ``[id]`` ...), which keep their nearest stable parent
    directory: ``/_next/static/chunks/app/cart/page-0a1b2c3d4e5f6a7b.js`` -> ``cart/page.js``.
    Unusable names (``<anonymous>``, ``native``) -> ``""``. The rules and their trade-offs: docs/grouping.md.
    """
    if not filename:
        return ""
    path = re.split(r"[?#]", filename.strip(), maxsplit=1)[0].rstrip("/\\")
    *directories, name = re.split(r"[/\\]", path)
    if name.lower() in _UNUSABLE_FILES:
        return ""
    parts = name.split(".")
    if len(parts) > 2:  # main.3f9a1c2b.chunk.js: hashes between the stem and the extension
        parts = [parts[0], *(p for p in parts[1:-1] if not _looks_like_hash(p)), parts[-1]]
    stem = _strip_hash_from_stem(parts[0]) if len(parts) > 1 else parts[0]
    base = ".".join([stem, *parts[1:]])
    if stem.lower() in _GENERIC_STEMS or stem.startswith(("[", "$")):
        parent = _stable_parent(directories)
        if parent:
            return f"{parent}/{base}"
    return base


_ANONYMOUS = re.compile(r"<anonymous>|<unknown>|\?|^anonymous$|^Anonymous function$|^\(anonymous\)$", re.IGNORECASE)
_UNUSABLE_FUNCTIONS = {"", "anonymous", "<anonymous>", "?", "<unknown>", "(anonymous)", "eval", "Object", "Module"}


@_memo_short_strings(4096)
def normalize_function(function: str | None) -> str:
    """The function name without engine decorations; ``""`` when anonymous.

    ``<anonymous>``, ``?``, ``(anonymous)`` -> ``""``; ``Object.<anonymous>`` -> ``""``;
    ``async renderTotal`` -> ``renderTotal``; ``new Cart`` -> ``Cart``;
    ``Cart.add [as onClick]`` -> ``Cart.add``; Firefox's ``renderTotal/<`` -> ``renderTotal``;
    ``Object.track`` (Chrome's name for a plain object's method) -> ``track``;
    ``Cart.add`` stays as it is.
    """
    if not function:
        return ""
    name = function.strip()
    name = re.sub(r"\s*\[as [^\]]*\]$", "", name)
    name = re.sub(r"^(?:async|new)\s+", "", name)
    name = re.sub(r"(?:/<)+$|<+$", "", name)  # Firefox inner-function markers
    name = _ANONYMOUS.sub("", name).strip().strip(".").strip()
    if name.startswith("Object."):
        name = name[len("Object."):]
    return "" if name in _UNUSABLE_FUNCTIONS else name


def normalize_context_line(line: str | None) -> str:
    """The source line with whitespace collapsed; ``""`` when missing or longer than 120 characters (minified)."""
    if not line:
        return ""
    text = _SPACE.sub(" ", line).strip()
    return "" if len(text) > CONTEXT_LINE_MAX else text


def _get(frame: Any, name: str) -> Any:
    if isinstance(frame, Mapping):
        value = frame.get(name)
        return True if name == "in_app" and value is None else value
    return getattr(frame, name, True if name == "in_app" else None)


def _frame_parts(frame: Any) -> tuple[str, str] | None:
    """(where, what) of a usable frame: module or file base name, and function (or source line); else None."""
    where = (_get(frame, "module") or "").strip() or normalize_filename(_get(frame, "filename"))
    function = normalize_function(_get(frame, "function"))
    if not where and not function:
        return None
    what = function or normalize_context_line(_get(frame, "context_line"))
    return where, what


def _in_app_parts(frames: Sequence[Any]) -> list[tuple[Any, tuple[str, str]]]:
    """(frame, (where, what)) of the usable in-app frames, outermost first."""
    out = []
    for frame in frames:
        if _get(frame, "in_app"):
            parts = _frame_parts(frame)
            if parts is not None:
                out.append((frame, parts))
    return out


# ---------------------------------------------------------------- grouping

# webpack: numeric ids ("chunk 42") or generated names ("chunk src_pages_Checkout_js"), not "chunk metadata"
_CHUNK_LOAD = re.compile(r"Loading (?:CSS )?chunk [\w~.-]*[\d_~-][\w~.-]* failed", re.IGNORECASE)


def is_chunk_load_error(exception_type: str, message: str) -> bool:
    """A lazily loaded bundle failed to load (usually a stale tab after a deploy)."""
    return (exception_type or "").strip() == "ChunkLoadError" or bool(_CHUNK_LOAD.search(message or ""))


def default_components(exception_type: str, message: str, frames: Sequence[FrameLike]) -> tuple[str, tuple[str, ...]]:
    """(method, components) of the default grouping, without the project. See the module docstring."""
    type_ = (exception_type or "").strip() or "Error"
    if is_chunk_load_error(type_, message):
        return "message", ("chunk-load",)
    parts = _in_app_parts(frames)
    if parts:
        frames_ = (f"frame:{where} {what}".rstrip() for _frame, (where, what) in parts)
        return "stacktrace", (*frames_, f"type:{type_}")
    return "message", (f"type:{type_}", f"message:{normalize_message(message or '')}")


def _is_default_variable(value: str) -> bool:
    return re.fullmatch(r"\{\{\s*default\s*\}\}", value.strip()) is not None


def _title(exception_type: str, message: str) -> str:
    type_ = (exception_type or "").strip() or "Error"
    first = (message or "").strip().splitlines()[0].strip() if (message or "").strip() else ""
    title = f"{type_}: {first}" if first else type_
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def _culprit(frames: Sequence[Any]) -> str:
    usable = _in_app_parts(frames)
    if not usable:
        return ""
    frame, (where, _what) = usable[-1]
    function = normalize_function(_get(frame, "function"))
    if function and where:
        return f"{function} ({where})"
    return function or where


def _sha1(components: Sequence[str]) -> str:
    encoded = json.dumps(list(components), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(encoded.encode("utf-8"), usedforsecurity=False).hexdigest()


def group_error(exception_type: str, message: str, frames: Sequence[FrameLike],
                sdk_fingerprint: Sequence[str] | None = None, *, project: str = "") -> Grouping:
    """Group one error. ``frames`` outermost first (Sentry order); objects with the :class:`FrameLike`
    attributes, or plain dicts. The project is part of every fingerprint: projects never share an issue.

    Example::

        group_error("TypeError", "Failed to fetch",
                    frames_from_dicts([{"filename": "https://x.com/static/js/api.js", "function": "request",
                                        "lineno": 12, "colno": 7, "in_app": True}]), project="shop")
    """
    method, components = default_components(exception_type, message, frames)
    if sdk_fingerprint:
        expanded: list[str] = []
        for value in sdk_fingerprint:
            value = str(value)
            if _is_default_variable(value):
                expanded.extend(components)
            else:
                expanded.append(f"sdk:{value}")
        method, components = "sdk", tuple(expanded)
    hashed = (f"project:{project}", *components)
    return Grouping(fingerprint=_sha1(hashed), method=method, title=_title(exception_type, message),
                    culprit=_culprit(frames), components=hashed)
