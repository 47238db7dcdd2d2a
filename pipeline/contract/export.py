"""Generate the JSON Schema files in ``schemas/`` from the models; a test fails when they drift.

    pulse schemas export        # rewrite schemas/*.schema.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from pipeline.contract.dead_letter import DeadLetter
from pipeline.contract.events import ActionEvent, ApiEvent, ErrorEvent, Event, MetricEvent, VitalEvent

SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema. ``event`` is the union a raw-topic message element must match."""
    return {
        "event.schema.json": TypeAdapter(Event).json_schema(),
        "event-batch.schema.json": TypeAdapter(list[Event]).json_schema(),
        "error.schema.json": ErrorEvent.model_json_schema(),
        "vital.schema.json": VitalEvent.model_json_schema(),
        "action.schema.json": ActionEvent.model_json_schema(),
        "api.schema.json": ApiEvent.model_json_schema(),
        "metric.schema.json": MetricEvent.model_json_schema(),
        "dead-letter.schema.json": DeadLetter.model_json_schema(),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_schemas(out_dir: Path = SCHEMAS_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = out_dir / name
        path.write_text(render(schema))
        written.append(path)
    return written


def drifted(out_dir: Path = SCHEMAS_DIR) -> list[str]:
    """Names of schema files that differ from what the models generate now."""
    return [name for name, schema in json_schemas().items()
            if not (out_dir / name).exists() or (out_dir / name).read_text() != render(schema)]
