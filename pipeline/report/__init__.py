"""The health report (``pulse report``, ``GET /api/report``): the spec's ``monitoring_health_check``.

* ``queries``: the SQL, one function per section, for a period and the one before it (pure strings);
* ``health``: pure: figures of both periods -> the report (ratings, scores, health score,
  recommendations, trend);
* ``build``: runs the queries through ``pipeline.api.common.query_rows`` and calls ``health``;
* ``render``: rich tables for the CLI.

Every figure and the health score are defined in ``docs/report.md``.
"""

from pipeline.report.health import format_period, parse_period

__all__ = ["format_period", "parse_period"]
