"""Native re-framing for a client's protocol revision, against blocks as chDB writes them (captured
from chDB 4.4 with ``chdb.query(sql, 'Native')``)."""

from __future__ import annotations

import pytest

from pipeline.storage.native_format import NativeRefused, parse_revision, parse_type, to_revision

INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows 0, bucket_num -1, end
# SELECT 'ab' AS s, toUInt64(7) AS n
PLAIN = b"\x02\x01\x01s\x06String\x02ab\x01n\x06UInt64\x07\x00\x00\x00\x00\x00\x00\x00"
# SELECT map('k', [toNullable(1), NULL]) AS m, (1, 'x')::Tuple(a UInt8, b String) AS t,
#        toDecimal64(1.5, 2) AS d, toFixedString('ab', 2) AS f
NESTED = (b"\x04\x01\x01m#Map(String, Array(Nullable(UInt8)))\x01\x00\x00\x00\x00\x00\x00\x00\x01k\x02\x00\x00"
          b"\x00\x00\x00\x00\x00\x00\x01\x01\x00\x01t\x18Tuple(a UInt8, b String)\x01\x01x\x01d\x0eDecimal(18, 2)"
          b"\x96\x00\x00\x00\x00\x00\x00\x00\x01f\x0eFixedString(2)ab")
# SELECT [toLowCardinality('a')] AS x, toLowCardinality(toNullable('b')) AS y
LOW_CARDINALITY = (
    b"\x02\x01\x01x\x1dArray(LowCardinality(String))\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x06\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01a\x01\x00\x00\x00\x00\x00\x00\x00\x01"
    b"\x01y LowCardinality(Nullable(String))\x01\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x03\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x01b\x01\x00\x00\x00\x00\x00\x00\x00\x02")
# SELECT [] ::Array(LowCardinality(String)) AS a FROM numbers(2): the prefix, no dictionary
EMPTY_ARRAYS = b"\x01\x02\x01a\x1dArray(LowCardinality(String))\x01" + b"\x00" * 23
# SELECT toDateTime64('2026-01-02 03:04:05.678', 3, 'UTC') AS t, 'é' AS s
DATETIME64 = b"\x02\x01\x01t\x14DateTime64(3, 'UTC').\x8f\xa9|\x9b\x01\x00\x00\x01s\x06String\x02\xc3\xa9"


def test_revision_0_is_left_as_chdb_wrote_it() -> None:
    assert to_revision(PLAIN, 0) is PLAIN
    assert to_revision(b"", 54460) == b""  # an empty result has no block at all


def test_custom_serialization_revision_adds_block_info_and_a_zero_byte_after_each_type() -> None:
    assert to_revision(PLAIN, 54460) == (INFO + b"\x02\x01" + b"\x01s\x06String\x00\x02ab"
                                         + b"\x01n\x06UInt64\x00\x07\x00\x00\x00\x00\x00\x00\x00")


def test_before_custom_serialization_only_block_info_is_added() -> None:
    assert to_revision(PLAIN, 54453) == INFO + PLAIN


def test_out_of_order_buckets_revision_writes_the_third_block_info_field() -> None:
    out = to_revision(PLAIN, 54480)
    assert out.startswith(b"\x01\x00\x02\xff\xff\xff\xff\x03\x00\x00\x02\x01")


@pytest.mark.parametrize("block, types", [
    (NESTED, ["Map(String, Array(Nullable(UInt8)))", "Tuple(a UInt8, b String)", "Decimal(18, 2)", "FixedString(2)"]),
    (LOW_CARDINALITY, ["Array(LowCardinality(String))", "LowCardinality(Nullable(String))"]),
    (EMPTY_ARRAYS, ["Array(LowCardinality(String))"]),
    (DATETIME64, ["DateTime64(3, 'UTC')", "String"]),
])
def test_nested_and_dictionary_columns_are_walked_to_their_end(block: bytes, types: list[str]) -> None:
    framed = to_revision(block, 54460)
    body = framed[len(INFO):]
    for type_name in types:  # each type is followed by exactly one 0 byte, then the data as it was
        encoded = bytes([len(type_name)]) + type_name.encode()
        at = body.index(encoded) + len(encoded)
        assert body[at] == 0
        body = body[:at] + body[at + 1:]
    assert framed.startswith(INFO) and body == block
    assert len(framed) == len(INFO) + len(block) + len(types)


def test_long_strings_have_multi_byte_lengths() -> None:
    text = "x" * 300  # length 300: varint 0xAC 0x02
    block = b"\x01\x02\x01s\x06String" + (b"\xac\x02" + text.encode()) * 2
    assert to_revision(block, 54460) == INFO + b"\x01\x02\x01s\x06String\x00" + (b"\xac\x02" + text.encode()) * 2
    with pytest.raises(NativeRefused, match="CANNOT_READ_ALL_DATA"):
        to_revision(block[:-1], 54460)


def test_several_blocks_each_get_their_block_info() -> None:
    assert to_revision(PLAIN + PLAIN, 54460) == to_revision(PLAIN, 54460) * 2


def test_truncated_data_is_an_error_not_garbage() -> None:
    with pytest.raises(NativeRefused, match="CANNOT_READ_ALL_DATA"):
        to_revision(PLAIN[:-3], 54460)


@pytest.mark.parametrize("type_name", ["AggregateFunction(sum, UInt64)", "Dynamic", "JSON", "Variant(String, UInt8)"])
def test_types_whose_layout_depends_on_the_revision_are_refused(type_name: str) -> None:
    block = b"\x01\x01\x01x" + bytes([len(type_name)]) + type_name.encode() + b"\x00" * 16
    with pytest.raises(NativeRefused, match=r"Code: 48\..*NOT_IMPLEMENTED"):
        to_revision(block, 54460)


def test_revisions_are_parsed_and_bounded() -> None:
    assert parse_revision(None, 54515) == 0
    assert parse_revision("0", 54515) == 0
    assert parse_revision("54460", 54515) == 54460
    for bad in ("54404", "54516", "1", "abc", "-5"):
        with pytest.raises(NativeRefused, match=r"Code: 36\..*BAD_ARGUMENTS"):
            parse_revision(bad, 54515)


def test_type_parsing_handles_names_quotes_and_aliases() -> None:
    assert parse_type("Tuple(`a b` String, c Nullable(UInt8))") == \
        ("Tuple", (("String", ()), ("Nullable", (("UInt8", ()),))))
    assert parse_type("Enum8('a,b' = 1, 'c)' = 2)")[0] == "Enum8"
    assert parse_type("Point") == ("Tuple", (("Float64", ()), ("Float64", ())))
    assert parse_type("SimpleAggregateFunction(max, UInt32)") == ("UInt32", ())
    assert parse_type("Map(String, UInt64)") == ("Map", (("String", ()), ("UInt64", ())))
