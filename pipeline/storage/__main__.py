"""``python -m pipeline.storage`` = ``pulse sink``."""

from pipeline.cli import app

app(["sink"])
