"""Per-project rate limits at the collector: a token bucket per project. Pure (the caller passes the clock).

A project configured with ``N`` events per minute may send a burst of ``N`` at once and ``N/60`` a
second after that. A request that does not fit is refused whole (429 with the seconds until it
would fit), so an SDK retries it later instead of losing part of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    per_minute: dict[str, int]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, project: str, events: int, now: float) -> float:
        """0 when ``events`` may pass now (and takes them), else the seconds to wait."""
        limit = self.per_minute.get(project)
        if limit is None or events <= 0:
            return 0.0
        rate = limit / 60.0
        bucket = self._buckets.get(project)
        if bucket is None:
            bucket = self._buckets[project] = _Bucket(float(limit), now)
        bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if events > limit:
            return 60.0  # larger than a whole minute's allowance: never fits; say so plainly
        if bucket.tokens >= events:
            bucket.tokens -= events
            return 0.0
        return max(1.0, math.ceil((events - bucket.tokens) / rate))
