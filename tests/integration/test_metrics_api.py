"""POST /api/metrics -> Kafka -> worker -> sink -> metrics_minute/hour/day -> GET /api/metrics, on real
processes: counts, sums, min/max/avg exact, percentiles within 1 %, grouping and filters by tag,
built-in metrics from the browser rollups, retries with the same event ids counted once, and clear
4xx answers for bad input."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from tests.integration.pipeline_procs import running_pipeline
from tests.integration.test_issues import http, send
from tests.integration.test_sessions import query

pytestmark = pytest.mark.integration


def points(rng: random.Random, now: datetime, route: str, n: int, scale: float) -> list[dict[str, Any]]:
    return [{"name": "checkout.duration", "value": round(rng.lognormvariate(0, 0.6) * scale, 3), "unit": "millisecond",
             "tags": {"route": route, "payment": rng.choice(["card", "paypal"])}, "event_id": str(uuid.uuid4()),
             "timestamp": (now - timedelta(minutes=rng.uniform(1, 50))).isoformat()} for _ in range(n)]


def get(settings: Settings, **params: str) -> tuple[int, Any]:
    from urllib.parse import urlencode

    return http(settings, "GET", "/api/metrics?" + urlencode(params))


def test_custom_metrics_round_trip(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(5)
    now = datetime.now(timezone.utc)
    cart, checkout = points(rng, now, "/cart", 400, 300), points(rng, now, "/checkout", 300, 1200)
    every = cart + checkout
    with running_pipeline(settings, tmp_path / "logs") as procs:
        # bad input: 4xx, nothing accepted
        status, doc = http(settings, "POST", "/api/metrics", [{"name": "ok", "value": 1}, {"name": "bad name", "value": 2},
                                                              {"name": "x", "value": "abc"}, 7])
        assert status == 400 and "3 of 4 points are invalid" in doc["error"]
        assert [e["index"] for e in doc["errors"]] == [1, 2, 3]
        assert "metric.name" in doc["errors"][0]["reason"] or "name" in doc["errors"][0]["reason"]
        status, doc = http(settings, "POST", "/api/metrics", {"name": "x", "value": 1,
                                                             "timestamp": (now + timedelta(hours=2)).isoformat()})
        assert status == 400 and "in the future" in doc["errors"][0]["reason"]
        status, doc = http(settings, "POST", "/api/metrics", {"name": "x", "value": 1, "colour": "red"})
        assert status == 400 and "colour" in doc["errors"][0]["reason"]
        assert http(settings, "POST", "/api/metrics", {"name": "x", "value": 1}, {"X-Pulse-Key": "wrong"})[0] == 401

        for i in range(0, len(every), 250):
            status, doc = http(settings, "POST", "/api/metrics", every[i:i + 250])
            assert (status, doc["accepted"]) == (200, len(every[i:i + 250])), doc
        status, _ = http(settings, "POST", "/api/metrics", every[:100])  # a client retrying: same ids
        assert status == 200
        negative = [{"name": "balance.delta", "value": v} for v in (-5.0, 2.0, 3.0)]
        assert http(settings, "POST", "/api/metrics", negative)[0] == 200
        # built-in metrics come from the browser rollups
        send(settings, [{"event_id": str(uuid.uuid4()), "type": "error", "timestamp": now.isoformat(),
                         "session_id": "s1", "route": "/cart", "error": {"exception_type": "E", "message": str(i)}}
                        for i in range(7)])

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = query(settings, "SELECT sum(count) FROM metrics_minute WHERE name = 'checkout.duration'")
            if rows and rows[0][0] not in ("\\N", "0") and int(rows[0][0]) >= len(every):
                break
            time.sleep(0.5)
        time.sleep(1.5)  # a duplicate would arrive by now
        assert int(query(settings, "SELECT count() FROM metrics WHERE name = 'checkout.duration'")[0][0]) \
            == len(every), procs.log("worker")[-2000:]

        status, doc = get(settings, name="checkout.duration", aggregation="count", group_by="route")
        assert status == 200, doc
        assert {s["group"]["route"]: s["value"] for s in doc["series"]} == {"/cart": 400, "/checkout": 300}
        assert doc["interval"] == "1m" and doc["series"][0]["group"] == {"route": "/cart"}
        assert sum(p["value"] for p in doc["series"][0]["points"]) == 400

        for route, pts in (("/cart", cart), ("/checkout", checkout)):
            values = sorted(p["value"] for p in pts)
            for agg, want in (("sum", sum(values)), ("min", values[0]), ("max", values[-1]),
                              ("avg", sum(values) / len(values))):
                status, doc = get(settings, name="checkout.duration", aggregation=agg, **{"tag.route": route})
                assert status == 200 and doc["series"][0]["value"] == pytest.approx(want, rel=1e-9), (agg, doc)
            for agg, q in (("median", 0.5), ("p95", 0.95), ("p99", 0.99)):
                for period in ("1h", "1d", "1m"):  # minute, hour and day tables merge to the same answer
                    status, doc = get(settings, name="checkout.duration", aggregation=agg, period=period,
                                      **{"tag.route": route})
                    exact = values[int(q * (len(values) - 1))]
                    got = doc["series"][0]["value"]
                    assert abs(got - exact) <= 0.01 * exact, (route, agg, period, got, exact)

        status, doc = get(settings, name="checkout.duration", aggregation="count", group_by="payment",
                          **{"tag.route": "/cart"})
        want = {pay: sum(1 for p in cart if p["tags"]["payment"] == pay) for pay in ("card", "paypal")}
        assert {s["group"]["payment"]: s["value"] for s in doc["series"]} == want

        status, doc = get(settings, name="balance.delta", aggregation="p95")
        assert status == 400 and "negative values" in doc["error"]
        status, doc = get(settings, name="balance.delta", aggregation="avg")
        assert status == 200 and doc["series"][0]["value"] == pytest.approx(0.0)

        status, doc = get(settings, name="errors", aggregation="count", group_by="page")
        assert status == 200 and {s["group"]["page"]: s["value"] for s in doc["series"]} == {"/cart": 7}
        assert get(settings, name="errors", aggregation="p95")[0] == 400
        status, doc = get(settings, name="nothing.here")
        assert status == 200 and doc["series"] == []
        status, doc = get(settings, name="checkout.duration", period="2h")
        assert status == 400 and "period must be one of 1h, 1d, 1w, 1m" in doc["error"]
        assert get(settings)[0] == 400
