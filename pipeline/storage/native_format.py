"""ClickHouse's Native format in the layout of the protocol revision a client asked for.

chDB writes Native as ClickHouse's HTTP interface does without ``client_protocol_version`` (revision 0:
no block info, no serialization byte). Clients such as clickhouse-go send
``client_protocol_version=54460`` and read what ClickHouse's ``NativeWriter`` writes for that
revision; chDB has no setting for it (the server takes it from the HTTP request). So the blocks are
re-framed here, pure bytes in and out. What a revision changes in ``NativeWriter`` (ClickHouse
``src/Formats/NativeWriter.cpp``, ``src/Core/BlockInfo.cpp``, ``src/Core/ProtocolDefines.h``):

* ``> 0``: every block starts with ``BlockInfo``: field 1 ``is_overflows`` (UInt8), field 2
  ``bucket_num`` (Int32), from 54480 field 3 ``out_of_order_buckets`` (Array(Int32)), then 0.
* ``>= 54454``: after each column's type a UInt8 ``has_custom``; 0 means the default serialization,
  which is what revision 0 carries (sparse columns are materialized), so the data is copied as is.
* ``< 54405`` would drop LowCardinality, ``< 54337`` the time zone of DateTime, ``>= 54452`` versions
  AggregateFunction states, ``>= 54473`` changes Dynamic/JSON: those revisions and types are refused
  (``NativeRefused``) rather than answered in a layout the client would misread.

To put a byte after a column's type, the column's data has to be walked (its length is nowhere in
the stream): ``_skip`` knows the default binary layout of the plain types.
"""

from __future__ import annotations

import re
import struct

MIN_REVISION_WITH_LOW_CARDINALITY = 54405
MIN_REVISION_WITH_CUSTOM_SERIALIZATION = 54454
MIN_REVISION_WITH_OUT_OF_ORDER_BUCKETS = 54480

FIXED_WIDTH = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1,
    "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2, "BFloat16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Time": 4, "Decimal32": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Time64": 8, "Decimal64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
}
# Geo types are names for nested plain types.
ALIASES = {"Point": "Tuple(Float64, Float64)", "Ring": "Array(Point)", "LineString": "Array(Point)",
           "MultiLineString": "Array(LineString)", "Polygon": "Array(Ring)", "MultiPolygon": "Array(Polygon)"}
LC_KEY_WIDTH = (1, 2, 4, 8)
LC_NEEDS_GLOBAL_DICTIONARY = 1 << 8
LC_HAS_ADDITIONAL_KEYS = 1 << 9
NAME_THEN_TYPE = re.compile(r"^(`(?:[^`\\]|\\.|``)*`|[A-Za-z_][A-Za-z0-9_]*)\s+(\S.*)$", re.S)


class NativeRefused(ValueError):
    """ClickHouse-worded error: the request cannot be answered in the layout the client asked for."""

    def __init__(self, why: str, code: int = 48, name: str = "NOT_IMPLEMENTED") -> None:
        self.code, self.name = code, name
        super().__init__(f"Code: {code}. DB::Exception: {why}. ({name})")


def parse_revision(value: str | None, server_revision: int) -> int:
    """``client_protocol_version`` as a number this module can write, or NativeRefused (BAD_ARGUMENTS)."""
    if value is None or value.strip() in ("", "0"):
        return 0
    try:
        revision = int(value)
    except ValueError:
        raise NativeRefused(f"client_protocol_version '{value[:32]}' is not a number", 36, "BAD_ARGUMENTS") from None
    if not MIN_REVISION_WITH_LOW_CARDINALITY <= revision <= server_revision:
        raise NativeRefused(f"client_protocol_version {revision} is not supported by this endpoint (Native is written "
                            f"for 0 or {MIN_REVISION_WITH_LOW_CARDINALITY}..{server_revision}, the server's revision)",
                            36, "BAD_ARGUMENTS")
    return revision


def to_revision(data: bytes, revision: int) -> bytes:
    """Revision-0 Native blocks (as chDB writes them) re-framed for ``revision``."""
    if revision == 0 or not data:
        return data
    info = b"\x01\x00\x02\xff\xff\xff\xff"  # is_overflows = 0, bucket_num = -1
    if revision >= MIN_REVISION_WITH_OUT_OF_ORDER_BUCKETS:
        info += b"\x03\x00"  # out_of_order_buckets = []
    info += b"\x00"
    custom = revision >= MIN_REVISION_WITH_CUSTOM_SERIALIZATION
    out = bytearray()
    reader = _Reader(data)
    while not reader.done():
        out += info
        start = reader.pos
        columns, rows = reader.varint(), reader.varint()
        out += data[start:reader.pos]
        for _ in range(columns):
            start = reader.pos
            reader.string()
            type_name = reader.string().decode("utf-8", "replace")
            out += data[start:reader.pos]
            if custom:
                out += b"\x00"
            start = reader.pos
            if rows:
                tree = parse_type(type_name)
                reader.skip(8 * _low_cardinality_count(tree))  # each LowCardinality's state prefix
                _skip(reader, tree, rows)
            out += data[start:reader.pos]
    return bytes(out)


# ------------------------------------------------------------------ types

Type = tuple[str, tuple]  # (name, arguments): arguments are Types for nesting types, strings otherwise

NESTING = {"Nullable", "Array", "Map", "Tuple", "LowCardinality", "SimpleAggregateFunction"}


def parse_type(text: str) -> Type:
    """``Map(String, Array(Nullable(UInt8)))`` -> ("Map", (("String", ()), ("Array", ...))). Tuple
    element names (``Tuple(a String)``) are dropped: only the layout matters here."""
    text = text.strip()
    paren = text.find("(")
    if paren == -1:
        if text in ALIASES:
            return parse_type(ALIASES[text])
        return (text, ())
    if not text.endswith(")"):
        raise NativeRefused(f"cannot parse type {text[:200]!r}", 50, "UNKNOWN_TYPE")
    name, args = text[:paren].strip(), _split_args(text[paren + 1:-1])
    if name not in NESTING:
        return (name, tuple(args))
    if name == "SimpleAggregateFunction":
        return parse_type(args[1])  # (function, type): the state is the plain value
    if name == "Tuple":
        elements = []
        for arg in args:
            named = NAME_THEN_TYPE.match(arg)  # a type name is never followed by a space; an element name is
            elements.append(parse_type(named.group(2) if named else arg))
        return ("Tuple", tuple(elements))
    return (name, tuple(parse_type(arg) for arg in args))


def _split_args(text: str) -> list[str]:
    """Top-level comma split, respecting parentheses and quoted strings/identifiers."""
    args, depth, start, quote, i = [], 0, 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    args.append(text[start:].strip())
    return [a for a in args if a]


def _low_cardinality_count(tree: Type) -> int:
    name, args = tree
    own = 1 if name == "LowCardinality" else 0
    if name in NESTING:
        return own + sum(_low_cardinality_count(a) for a in args)
    return 0


def _fixed_width(name: str, args: tuple) -> int | None:
    if name in FIXED_WIDTH:
        return FIXED_WIDTH[name]
    if name == "FixedString":
        return int(args[0])
    if name == "Decimal":
        precision = int(args[0])
        return 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32
    if name.startswith("Interval"):
        return 8
    return None


def _skip(reader: "_Reader", tree: Type, rows: int) -> None:
    """Move past ``rows`` values of ``tree`` in its default bulk serialization."""
    name, args = tree
    width = _fixed_width(name, args)
    if width is not None:
        reader.skip(width * rows)
    elif name == "String":
        reader.pos = _skip_strings(reader.data, reader.pos, rows)
    elif name == "Nothing":
        reader.skip(rows)  # one placeholder byte per value
    elif name == "Nullable":
        reader.skip(rows)  # null map
        _skip(reader, args[0], rows)
    elif name in ("Array", "Map"):
        if rows == 0:
            return
        reader.skip(8 * (rows - 1))
        nested = reader.uint64()
        _skip(reader, args[0] if name == "Array" else ("Tuple", args), nested)
    elif name == "Tuple":
        for element in args:
            _skip(reader, element, rows)
    elif name == "LowCardinality":
        if rows == 0:
            return  # nothing is written for no values, not even the flags
        flags = reader.uint64()
        if flags & LC_NEEDS_GLOBAL_DICTIONARY:
            raise NativeRefused("LowCardinality with a global dictionary cannot be re-framed")
        if flags & LC_HAS_ADDITIONAL_KEYS:
            keys = reader.uint64()
            inner = args[0]
            _skip(reader, inner[1][0] if inner[0] == "Nullable" else inner, keys)
        count = reader.uint64()
        reader.skip(count * LC_KEY_WIDTH[flags & 0xFF])
    else:
        raise NativeRefused(f"columns of type {name} cannot be sent in Native format with client_protocol_version "
                            "on this endpoint; ask for another format (e.g. RowBinaryWithNamesAndTypes) or cast the "
                            "column (toString, CAST)")


def _skip_strings(data: bytes, pos: int, rows: int) -> int:
    """Past ``rows`` length-prefixed strings: the hot loop of re-framing (one byte of length is the
    common case), kept free of method calls."""
    end = len(data)
    try:
        for _ in range(rows):
            length = data[pos]
            pos += 1
            if length >= 0x80:
                length &= 0x7F
                shift = 7
                while True:
                    byte = data[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
            pos += length
    except IndexError:
        pos = end + 1
    if pos > end:
        raise NativeRefused("Native data ended inside a column", 33, "CANNOT_READ_ALL_DATA")
    return pos


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise NativeRefused("Native data ended inside a column", 33, "CANNOT_READ_ALL_DATA")
        self.pos += n

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise NativeRefused("Native data ended inside a number", 33, "CANNOT_READ_ALL_DATA")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def uint64(self) -> int:
        start = self.pos
        self.skip(8)
        return struct.unpack_from("<Q", self.data, start)[0]

    def string(self) -> bytes:
        n = self.varint()
        start = self.pos
        self.skip(n)
        return self.data[start:self.pos]
