"""Mergeable distributions: DDSketch buckets as a ``{key: count}`` map that ClickHouse sums.

A value ``v > 0`` goes to bucket ``key = ceil(log(v) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)`` (``ddsketch``'s ``LogarithmicMapping``); the bucket's value is
``gamma ** key * 2 / (1 + gamma)``, within relative accuracy ``a`` of every value in it. Zero (and
anything below the smallest positive bucket) is counted under ``ZERO_KEY``. Merging two sketches is
summing counts per key, which ClickHouse does natively with ``sumMap`` in an AggregatingMergeTree:
minute partials from any number of workers and late corrections merge into hours, days or any
grouping, and quantiles come from the merged buckets, never from averaging percentiles.

``RELATIVE_ACCURACY = 0.005``: quantiles are within 0.5 % of a value of the right rank. The same
formula is the SQL function ``pulseQuantile(q, sketch)`` (see ``pipeline/storage/tables.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.005
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
GAMMA = MAPPING.gamma
ZERO_KEY = -32768  # Int16 minimum: zero and values too small for a bucket
MIN_KEY, MAX_KEY = -32767, 32767
_MIN_POSITIVE = MAPPING.value(MIN_KEY)


# ``MAPPING.key(v)`` is ``int(ceil(log(v, 2) * multiplier) + offset)`` (ddsketch's LogarithmicMapping);
# ``key_of`` does the same arithmetic without two method calls per value (it runs for every vital
# and API call). tests/unit/test_rollups.py checks it against ``MAPPING.key``.
_MULTIPLIER: float = MAPPING._multiplier
_OFFSET: float = MAPPING._offset
_log, _ceil, _isnan = math.log, math.ceil, math.isnan


def key_of(value: float) -> int:
    if value <= _MIN_POSITIVE or _isnan(value):
        return ZERO_KEY
    key = int(_ceil(_log(value, 2) * _MULTIPLIER) + _OFFSET)
    return key if key < MAX_KEY else MAX_KEY


def value_of(key: int) -> float:
    return 0.0 if key == ZERO_KEY else MAPPING.value(key)


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """DDSketch's rank rule: the bucket holding rank ``q * (n - 1)``. None for an empty sketch."""
    total = sum(sketch.values())
    if total <= 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen > rank:
            return value_of(key)
    return value_of(max(sketch))


# ClickHouse lambda UDF with the same arithmetic (the Map from sumMap is sorted by key).
SQL_QUANTILE_FUNCTION = (
    "CREATE FUNCTION IF NOT EXISTS pulseQuantile AS (q, sketch) -> "
    "if(length(mapKeys(sketch)) = 0, nan, "
    "if(mapKeys(sketch)[arrayFirstIndex(c -> c > q * (arraySum(mapValues(sketch)) - 1), "
    "arrayCumSum(mapValues(sketch)))] = " + str(ZERO_KEY) + ", 0, "
    f"pow({GAMMA!r}, mapKeys(sketch)[arrayFirstIndex(c -> c > q * (arraySum(mapValues(sketch)) - 1), "
    f"arrayCumSum(mapValues(sketch)))]) * 2 / (1 + {GAMMA!r})))"
)
