"""The query and management API the collector serves next to ingestion: issues and metrics.

Reads go to ClickHouse through ``pipeline/storage/query_client.py`` (through the sink when the
database is embedded); decisions about issues go to Kafka, to the issue agent that owns them.
"""
