"""``python -m agents``: the worker with settings from the environment (PULSE_*)."""

from __future__ import annotations

import sys


def main() -> None:
    from pydantic import ValidationError

    from pipeline.settings import Settings, describe_settings_error

    try:
        settings = Settings()
    except ValidationError as exc:
        message = " ".join(describe_settings_error(exc).split())  # one line
        print(f"pulse worker: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    from agents.worker import run_worker

    run_worker(settings)


if __name__ == "__main__":
    main()
