"""Who may use the query and management API (no broker or database needed: access is checked first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.app import make_app
from pipeline.ingest.producer import EventProducer
from pipeline.settings import Settings


async def client_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> TestClient:
    for k, v in {"PULSE_SINK_PORT": "1", "PULSE_CLICKHOUSE_PATH": str(tmp_path / "chdb"), **env}.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    client = TestClient(TestServer(make_app(settings, EventProducer(settings.kafka))))
    await client.start_server()
    return client


async def test_token_required_when_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = await client_for(monkeypatch, tmp_path, PULSE_COLLECTOR_API_TOKEN="s3cret")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            resp = await client.get("/api/issues", headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert "PULSE_COLLECTOR_API_TOKEN" in (await resp.json())["error"]
        resp = await client.get("/api/metrics?name=x", headers={"Authorization": "Bearer s3cret"})
        # past the access check: no sink runs here, so the query backend is unavailable (never opened directly)
        assert resp.status == 503 and "sink" in (await resp.json())["error"]
        assert not (tmp_path / "chdb").exists()
    finally:
        await client.close()


async def test_loopback_allowed_without_a_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = await client_for(monkeypatch, tmp_path)
    try:
        resp = await client.post("/api/issues/abc/resolve")
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        resp = await client.get("/api/metrics")
        assert resp.status == 400 and "name is required" in (await resp.json())["error"]
    finally:
        await client.close()
