"""``python -m pipeline.collector``: run the collector with settings from the environment."""

from __future__ import annotations

import sys

from pipeline.settings import Settings, describe_settings_error


def main() -> None:
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError and friends: one clear message
        print(f"pulse collector: {describe_settings_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    from pipeline.collector import shared_metrics

    shared_metrics.enable(settings)  # before the app (and prometheus_client) is imported
    from pipeline.collector.app import run_collector

    run_collector(settings)


if __name__ == "__main__":
    main()
