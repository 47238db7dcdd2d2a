"""Every SDK endpoint answers with and without its trailing slash (a 404 loses the SDK's events).

An unknown key reaches the handler and gets its 401: the route exists. No broker runs here."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.app import make_app
from pipeline.ingest.producer import EventProducer
from pipeline.settings import Settings

SDK_PATHS = ["/api/1/envelope/", "/api/1/store/", "/capture/", "/batch/", "/e/", "/i/v0/e/", "/track/", "/engage/",
             "/i/v1/analytics/events"]


@pytest.mark.parametrize("path", [form for p in SDK_PATHS for form in (p.rstrip("/") + "/", p.rstrip("/"))])
async def test_sdk_paths_with_and_without_trailing_slash(path: str, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PULSE_CLICKHOUSE_PATH", str(tmp_path / "chdb"))
    settings = Settings()
    client = TestClient(TestServer(make_app(settings, EventProducer(settings.kafka))))
    await client.start_server()
    try:
        body = b'{"api_key": "nope", "batch": [{"event": "x", "distinct_id": "u"}]}'
        if "envelope" in path:
            body = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"event"}\n{}\n'
        resp = await client.post(path, data=body, headers={"Authorization": "Bearer nope"})
        assert resp.status == 401, (path, resp.status, await resp.text())
        preflight = await client.options(path)
        assert preflight.status == 204 and "POST" in preflight.headers["Access-Control-Allow-Methods"]
    finally:
        await client.close()
