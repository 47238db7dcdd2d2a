"""A fast path for the worker's decoding: msgspec Structs generated from the pydantic contract.

``pipeline/contract/events.py`` stays THE contract. This module walks its models at import time
(field types, defaults, ``max_length``/``min_length``, ``ge``/``le``, ``pattern``, ``Literal``, the
tagged union on ``type``) and builds msgspec Structs that decode JSON bytes straight into typed
objects, ~10x cheaper than ``validate_json`` with the contract's Python hooks (issue 14). Anything
the generator does not understand raises at import, so the contract cannot drift from it silently.

The fast path accepts a SUBSET of what the contract accepts and gives events that read the same
by attribute (``type``, every field, nested payloads; datetimes carry ``timezone.utc`` or a fixed
``timezone`` instead of pydantic's ``TzInfo``, same instant and offset). ``decode_events`` returns
None for anything else and the caller falls back to pydantic, which decides and words the dead
letter reasons. Declined on purpose, because msgspec would decide differently or pydantic is lax:
naive datetimes (``Meta(tz=True)``; the contract makes them UTC), fractions of a second beyond
microseconds (msgspec rounds, pydantic truncates; also when written with JSON escapes), numbers as strings, ints as floats, bools as
0/1, braced or ``urn:`` UUIDs, ``NaN``/``1e400`` (msgspec rejects out-of-range numbers), a first
value of a duplicate key that pydantic would skip. The contract's validators (``_utc``,
``_required_per_kind``, ``_default_ok``) are the contract's own functions, called from
``__post_init__`` (``_utc`` need not be: it only changes the naive times declined above); a
``ValueError`` there declines the event as well.

Error events (~2 % of traffic) are left to pydantic: rows read their frames and breadcrumbs
through ``model_dump``. A message holding one goes the pydantic way whole.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.contract.events import EVENT_ADAPTER, Event

# Event types decoded here; the others always go through pydantic (see the module docstring).
FAST_TYPES: tuple[str, ...] = ("vital", "action", "api", "metric")

# A time with more than six digits after the second ("...:05.1234567"): msgspec rounds it to the
# microsecond, pydantic truncates. Searched from its literal colon (a pattern starting with a digit
# class costs 5x more); a hit counts only with a digit before the colon, which JSON's own syntax
# never has (a key's colon follows a quote), so compact floats like ``"x":12.3456789`` do not count.
_LONG_FRACTION = re.compile(rb":\d\d[.,]\d{7}")
_DIGITS = b"0123456789"
# ... unless the time's characters are JSON escapes (``\u002e`` is ".", ``\u0030``-``\u0039`` digits,
# ``\u003a`` ":"): the parsers read them unescaped, the scan above would not. No encoder escapes these
# characters unasked, so a message holding such an escape anywhere is simply left to pydantic.
_TIME_CHAR_ESCAPES = (b"\\u002", b"\\u003")
# Their common prefix, looked for first: a message holding neither (nearly all) is then scanned once
# instead of twice (1.0 -> 0.6 us per event on the load bench's flushes, issue 14). Before it, a
# backslash (one byte: a memchr, ~4x cheaper than a search for four bytes): most messages have none.
_ESCAPE_PREFIX = b"\\u00"
# Field validators the generated Structs need not call: ``Meta(tz=True)`` declines the naive
# datetimes they exist for, and they return aware ones unchanged (the parity tests check offsets).
_AWARE_TIME_HOOKS = frozenset({"_utc"})

_SCALARS = (str, int, float, bool, UUID)


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """pydantic field metadata -> ``msgspec.Meta`` keyword arguments; raises on anything unknown."""
    meta: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, FieldInfo):  # an inner Annotated[..., Field(...)]
            meta.update(_constraints(m.metadata))
        elif isinstance(m, annotated_types.MaxLen):
            meta["max_length"] = m.max_length
        elif isinstance(m, annotated_types.MinLen):
            meta["min_length"] = m.min_length
        elif isinstance(m, annotated_types.Ge):
            meta["ge"] = m.ge
        elif isinstance(m, annotated_types.Le):
            meta["le"] = m.le
        elif type(m).__name__ == "AllowInfNan":
            pass  # msgspec never decodes inf or NaN from JSON: both settings accept what it gives
        elif type(m).__name__ == "_PydanticGeneralMetadata" and set(vars(m)) == {"pattern"}:
            meta["pattern"] = _pattern(m.pattern)
        else:
            raise TypeError(f"the fast path does not know the constraint {m!r}")
    return meta


def _pattern(pattern: str) -> str:
    """A pydantic (Rust regex) pattern for Python's ``re.search``: ``$`` there is the end of the
    text, in Python it also matches before a final newline, so a trailing ``$`` becomes ``\\Z``."""
    body = pattern[:-1] if pattern.endswith("$") and not pattern.endswith("\\$") else None
    if "$" in (body if body is not None else pattern).replace("\\$", ""):
        raise TypeError(f"the fast path cannot translate the pattern {pattern!r}")
    return body + r"\Z" if body is not None else pattern


class _Generator:
    """One msgspec type per pydantic type; one Struct per model (memoised, models are shared)."""

    def __init__(self) -> None:
        self.structs: dict[type[BaseModel], type[msgspec.Struct]] = {}

    def type_of(self, tp: Any, metadata: list[Any] = ()) -> Any:  # type: ignore[assignment]
        meta = _constraints(list(metadata))
        origin = typing.get_origin(tp)
        if origin is Annotated:
            base, *extra = typing.get_args(tp)
            return self.type_of(base, [*metadata, *extra])
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            # constraints of an Optional field apply to its non-None member, as in pydantic
            return Union[tuple(a if a is type(None) else self.type_of(a, metadata) for a in args)]  # type: ignore
        if origin is Literal:
            return self._meta(tp, meta)
        if origin is list:
            (item,) = typing.get_args(tp)
            return self._meta(list[self.type_of(item)], meta)  # type: ignore[misc]
        if origin is dict:
            key, value = typing.get_args(tp)
            return self._meta(dict[self.type_of(key), self.type_of(value)], meta)  # type: ignore[misc]
        if tp is datetime:
            return Annotated[datetime, msgspec.Meta(tz=True, **meta)]  # naive: declined (the contract makes it UTC)
        if tp is Any or tp in _SCALARS:
            return self._meta(tp, meta)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if meta:
                raise TypeError(f"constraints on a model field: {meta}")
            return self.struct(tp)
        raise TypeError(f"the fast path does not know the type {tp!r}")

    @staticmethod
    def _meta(tp: Any, meta: dict[str, Any]) -> Any:
        return Annotated[tp, msgspec.Meta(**meta)] if meta else tp

    def struct(self, model: type[BaseModel], tag: str | None = None) -> type[msgspec.Struct]:
        if model in self.structs:
            return self.structs[model]
        config = model.model_config
        if config.get("extra", "ignore") != "ignore" or config.get("strict") or config.get("str_strip_whitespace") \
                or config.get("frozen"):
            raise TypeError(f"{model.__name__}: the fast path only knows extra='ignore', lax, unstripped, mutable")
        fields: list[tuple[Any, ...]] = []
        for name, info in model.model_fields.items():
            if info.alias not in (None, name) or info.validation_alias is not None:
                raise TypeError(f"{model.__name__}.{name}: aliases are not supported")
            if tag is not None and name == "type":
                continue  # the tag: msgspec checks it, the class holds it
            tp = self.type_of(info.annotation, info.metadata)
            if info.is_required():
                fields.append((name, tp))
            elif info.default_factory is not None:
                fields.append((name, tp, msgspec.field(default_factory=info.default_factory)))
            else:
                fields.append((name, tp, info.default))
        namespace: dict[str, Any] = {"__module__": __name__}
        post_init = _hooks(model)
        if post_init is not None:
            namespace["__post_init__"] = post_init
        kwargs: dict[str, Any] = {}
        if tag is not None:
            kwargs = {"tag_field": "type", "tag": tag}
            namespace["type"] = tag  # what downstream reads (``event.type``), as on the pydantic model
            namespace["model_copy"] = _model_copy
        struct = msgspec.defstruct(model.__name__, fields, kw_only=True, namespace=namespace, **kwargs)
        self.structs[model] = struct
        return struct


def _hooks(model: type[BaseModel]) -> Callable[[Any], None] | None:
    """``__post_init__`` calling the contract's own validators, in pydantic's order (field validators,
    then model validators 'after'); None when the model has none. Raises on any other kind."""
    decorators = model.__pydantic_decorators__
    if decorators.validators or decorators.root_validators or decorators.field_serializers \
            or decorators.model_serializers or decorators.computed_fields:
        raise TypeError(f"{model.__name__}: the fast path only knows 'after' field and model validators")
    field_hooks: list[tuple[str, Callable[[Any], Any]]] = []
    for dec in decorators.field_validators.values():
        if dec.info.mode != "after":
            raise TypeError(f"{model.__name__}.{dec.cls_var_name}: only 'after' field validators are supported")
        if dec.cls_var_name in _AWARE_TIME_HOOKS and all(
                datetime in (model.model_fields[f].annotation, *typing.get_args(model.model_fields[f].annotation))
                for f in dec.info.fields):
            continue
        func = getattr(model, dec.cls_var_name)  # bound as the contract binds it (a classmethod)
        field_hooks += [(name, func) for name in dec.info.fields]
    model_hooks = []
    for dec in decorators.model_validators.values():
        if dec.info.mode != "after":
            raise TypeError(f"{model.__name__}.{dec.cls_var_name}: only 'after' model validators are supported")
        model_hooks.append(dec.func)
    if not field_hooks and not model_hooks:
        return None
    if not field_hooks and len(model_hooks) == 1:
        # The validator itself (it takes the instance; msgspec ignores what it returns): one Python
        # call per action or API event instead of two and two loops (~0.1 us per event, issue 14).
        return model_hooks[0]

    def __post_init__(self: Any) -> None:
        for name, func in field_hooks:
            value = getattr(self, name)
            new = func(value)
            if new is not value:
                setattr(self, name, new)
        for func in model_hooks:
            func(self)

    return __post_init__


def _model_copy(self: Any, update: dict[str, Any]) -> Any:
    """What ``_in_time_window`` uses of pydantic's ``model_copy``: a copy with some fields replaced."""
    return msgspec.structs.replace(self, **update)


def _event_structs(generator: _Generator) -> dict[str, type[msgspec.Struct]]:
    """The fast event Structs by ``type``, from the contract's discriminated union."""
    union, *extra = typing.get_args(Event)
    if not any(isinstance(e, FieldInfo) and e.discriminator == "type" for e in extra):
        raise TypeError("the contract's Event is no longer a union discriminated on 'type'")
    out = {}
    for model in typing.get_args(union):
        (tag,) = typing.get_args(model.model_fields["type"].annotation)
        if tag in FAST_TYPES:
            out[tag] = generator.struct(model, tag=tag)
    if set(out) != set(FAST_TYPES):
        raise TypeError(f"the contract has no event types {set(FAST_TYPES) - set(out)}")
    return out


_GENERATED = _Generator()
FAST_EVENTS: dict[str, type[msgspec.Struct]] = _event_structs(_GENERATED)
FAST_STRUCTS: dict[type[BaseModel], type[msgspec.Struct]] = _GENERATED.structs  # every model's Struct
_FastEvent = Union[tuple(FAST_EVENTS.values())]  # type: ignore[valid-type]
_ONE = msgspec.json.Decoder(_FastEvent)
_BATCH = msgspec.json.Decoder(list[_FastEvent])  # type: ignore[valid-type]


def decode_events(raw: bytes) -> list[Any] | None:
    """The events of a raw message (one JSON object or an array), or None when the fast path
    declines it (anything it cannot decide exactly as the contract would): then validate with pydantic."""
    first = raw[:1]
    try:
        if first == b"[":
            events = _BATCH.decode(raw)
        elif first == b"{":
            events = [_ONE.decode(raw)]
        else:
            return None
    except (msgspec.DecodeError, ValueError, TypeError, RecursionError):  # deep nesting: pydantic's depth limit decides
        return None
    if b"\\" in raw and _ESCAPE_PREFIX in raw and (_TIME_CHAR_ESCAPES[0] in raw or _TIME_CHAR_ESCAPES[1] in raw):
        return None
    hit = _LONG_FRACTION.search(raw)
    while hit is not None:
        start = hit.start()
        if start and raw[start - 1] in _DIGITS:
            return None
        hit = _LONG_FRACTION.search(raw, start + 1)
    return events


def as_contract(event: Any) -> Any:
    """The contract's pydantic model of a fast event (or the model itself): for the rare paths that
    need pydantic's methods (a dead letter's ``dump_json``)."""
    if isinstance(event, BaseModel):
        return event
    return EVENT_ADAPTER.validate_python(msgspec.to_builtins(event))
