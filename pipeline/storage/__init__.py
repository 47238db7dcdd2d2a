"""Storage: table definitions, migrations, the sink (the only ClickHouse writer), query routing."""
