// The official ClickHouse JS client (@clickhouse/client, pinned in package-lock.json) against the sink's
// SQL endpoint: JSONEachRow/JSON/CSV reads, query parameters, gzip both ways, a refused write.
// Prints one JSON object; tests/integration/test_sql_drivers.py asserts its exact values.
// Usage: node probe.cjs URL USER PASSWORD
const { createClient } = require('@clickhouse/client')

async function main () {
  const [url, username, password] = process.argv.slice(2)
  const out = {}
  // compression on both ways: answers gzip (enable_http_compression=1), request bodies gzip
  const client = createClient({ url, username, password, database: 'pulse',
    compression: { response: true, request: true } })
  try {
    out.ping = (await client.ping()).success
    const sql = "SELECT session_id, x, timestamp FROM actions WHERE project = 'drivers' ORDER BY session_id"
    out.jsonEachRow = await (await client.query({ query: sql, format: 'JSONEachRow' })).json()
    const json = await (await client.query({ query: sql, format: 'JSON' })).json()
    out.json = { meta: json.meta, data: json.data, rows: json.rows }
    out.csv = await (await client.query({ query: sql, format: 'CSVWithNames' })).text()
    const params = await client.query({
      query: 'SELECT count() AS n, max(selector) AS s FROM actions WHERE project = {project:String} AND session_id = {sid:String}',
      format: 'JSONEachRow',
      query_params: { project: 'drivers', sid: 'drv-2' }
    })
    out.params = await params.json()
    const big = await client.query({ query: 'SELECT number FROM numbers(100000)', format: 'JSONCompactEachRow' })
    out.bigRows = (await big.json()).length
    try {
      await client.command({ query: "INSERT INTO actions (project) VALUES ('node')" })
      out.write = 'accepted'
    } catch (err) {
      out.write = { code: err.code, type: err.type, message: err.message }
    }
  } finally {
    await client.close()
  }
  console.log(JSON.stringify(out))
}

main().catch((err) => { console.error(err); process.exit(1) })
