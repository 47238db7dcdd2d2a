"""Label matchers, with Alertmanager's semantics. Pure.

Routes, inhibition rules and silences all select alerts the same way, so they share one small
language, the one Alertmanager operators already know::

    severity="critical"          equal
    project!="demo"              not equal
    page=~"/checkout.*"          the whole value matches the regex
    alertname!~"Slow.*|Dead.*"   the whole value does not match the regex

Semantics (as in Alertmanager):

* regexes are **fully anchored**: ``page=~"/check"`` does not match ``/checkout``;
* a **missing label equals ""**: ``team=""`` matches alerts without ``team``, ``team!=""`` requires
  it, ``team=~".*"`` matches everything;
* a list of matchers is a conjunction (all must match).

Values may be double-quoted (with ``\\"``, ``\\\\`` and ``\\n`` escapes) or bare; bare values are
trimmed and cannot contain ``,`` or ``"``. ``parse_matchers`` also accepts a comma-separated list,
optionally wrapped in braces: ``{severity="critical", project=~"shop|blog"}``.

Regexes are Python's ``re`` (Alertmanager uses Go's RE2). The common subset (classes, alternation,
repetition, anchors) behaves the same; lookarounds and backreferences are Python-only, so configs
that are shared with a real Alertmanager should avoid them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

OPERATORS = ("=~", "!~", "!=", "=")  # longest first: the tokenizer tries them in this order
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Matcher:
    """One ``name op value`` condition on an alert's labels."""

    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"bad label name {self.name!r}: expected [A-Za-z_][A-Za-z0-9_]*")
        if self.op not in OPERATORS:
            raise ValueError(f"bad operator {self.op!r}; expected one of {', '.join(OPERATORS)}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as exc:
                raise ValueError(f"bad regex {self.value!r} for label {self.name!r}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def parse_matcher(text: str) -> Matcher:
    """One matcher, e.g. ``severity="critical"``; ``ValueError`` saying what is wrong."""
    matchers, rest = _parse_one(text.strip(), 0)
    if text.strip()[rest:].strip():
        raise ValueError(f"unexpected text after the matcher in {text!r}: {text.strip()[rest:]!r}")
    return matchers


def parse_matchers(text: str | Iterable[str]) -> list[Matcher]:
    """Several matchers: an iterable of single matchers, or one string of comma-separated matchers
    (``{a="1", b=~"x|y"}`` or ``a=1,b!=2``)."""
    if not isinstance(text, str):
        return [parse_matcher(t) for t in text]
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise ValueError(f"missing closing brace in {text!r}")
        body = body[1:-1].strip()
    out: list[Matcher] = []
    pos = 0
    while pos < len(body):
        matcher, pos = _parse_one(body, pos)
        out.append(matcher)
        pos = _skip_space(body, pos)
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"expected ',' between matchers at {body[pos:]!r} in {text!r}")
            pos = _skip_space(body, pos + 1)
    return out


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """``{a="1", b=~"x"}``: the canonical text of a list (used in group keys and silence listings)."""
    return "{" + ", ".join(str(m) for m in matchers) + "}"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_one(text: str, pos: int) -> tuple[Matcher, int]:
    """Parse a matcher starting at ``pos``; returns it and the position after it."""
    pos = _skip_space(text, pos)
    name = _NAME.match(text, pos)
    if name is None:
        raise ValueError(f"expected a label name at {text[pos:]!r} in {text!r}")
    pos = _skip_space(text, name.end())
    op = next((o for o in OPERATORS if text.startswith(o, pos)), None)
    if op is None:
        raise ValueError(f"expected one of {', '.join(OPERATORS)} after {name.group()!r} in {text!r}")
    pos = _skip_space(text, pos + len(op))
    if pos < len(text) and text[pos] == '"':
        value, pos = _quoted(text, pos)
    else:
        end = pos
        while end < len(text) and text[end] not in ',"}':
            end += 1
        value, pos = text[pos:end].strip(), end
    return Matcher(name.group(), op, value), pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ValueError(f"unterminated quoted value in {text!r}")
