package drivers;

import java.sql.Array;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

/**
 * The calls DBeaver and Metabase make through the ClickHouse JDBC driver (jdbc-v2), with the driver's
 * default options (LZ4 compress=1 answers), against the sink's SQL endpoint. Prints one
 * "key<TAB>value" line per fact; tests/integration/test_sql_drivers.py asserts the exact values.
 * Usage: JdbcProbe JDBC_URL USER PASSWORD
 */
public final class JdbcProbe {
    private JdbcProbe() {
    }

    private static void out(String key, Object value) {
        System.out.println(key + "\t" + value);
    }

    private static String cell(ResultSet rs, int column) throws SQLException {
        Object value = rs.getObject(column);
        if (rs.wasNull() || value == null) {
            return "NULL";
        }
        if (value instanceof Array) {
            return Arrays.toString((Object[]) ((Array) value).getArray());
        }
        return value.toString();
    }

    private static String column(ResultSet rs, String name, String separator) throws SQLException {
        List<String> values = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                values.add(rs.getString(name));
            }
        }
        return String.join(separator, values);
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            out("product", meta.getDatabaseProductName());
            out("driver", meta.getDriverName() + " " + meta.getDriverVersion());

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) {
                    schemas.add(rs.getString("TABLE_SCHEM"));
                }
            }
            out("schemas", String.join(",", schemas));

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "pulse", "%", null)) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
                }
            }
            out("tables", String.join(",", tables));

            out("tableTypes", column(meta.getTableTypes(), "TABLE_TYPE", ","));
            out("primaryKeys", column(meta.getPrimaryKeys(null, "pulse", "actions"), "COLUMN_NAME", ","));
            out("importedKeys", column(meta.getImportedKeys(null, "pulse", "actions"), "FKCOLUMN_NAME", ","));
            out("typeInfo", column(meta.getTypeInfo(), "TYPE_NAME", ","));  // DBeaver asks on connect

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "pulse", "actions", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":"
                            + rs.getInt("DATA_TYPE") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            out("columns", String.join(";", columns));

            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery(
                         "SELECT session_id, x, project, timestamp, toUInt64(length(selector)) AS selector_length, "
                                 + "toFloat64(ifNull(x, 0)) * 2 AS doubled, [kind, selector] AS pair "
                                 + "FROM actions WHERE project = 'drivers' ORDER BY session_id")) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> types = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    types.add(md.getColumnLabel(i) + ":" + md.getColumnTypeName(i));
                }
                out("select.types", String.join(";", types));
                int row = 0;
                while (rs.next()) {
                    List<String> cells = new ArrayList<>();
                    for (int i = 1; i <= md.getColumnCount(); i++) {
                        cells.add(cell(rs, i));
                    }
                    out("select.row" + row, String.join("|", cells));
                    out("select.instant" + row, rs.getTimestamp("timestamp").toInstant());
                    row++;
                }
                out("select.rows", row);
            }

            // DateTime without a zone in its type: the driver reads it in the server's zone, which it takes
            // from X-ClickHouse-Timezone (the test runs this JVM in another zone to tell the two apart)
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT toDateTime('2026-03-01 12:00:00') AS plain, timezone() AS zone")) {
                rs.next();
                out("plain.zoned", rs.getObject("plain", java.time.ZonedDateTime.class) + "|" + rs.getString("zone"));
            }

            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT count() AS n, max(selector) AS s FROM actions WHERE project = 'drivers' AND session_id = ?")) {
                ps.setString(1, "drv-1");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out("prepared", rs.getLong("n") + "|" + rs.getString("s"));
                }
            }

            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO actions (project) VALUES ('jdbc')");
                out("write", "accepted");
            } catch (SQLException e) {
                out("write.code", e.getErrorCode());
                out("write.message", e.getMessage().replace('\n', ' '));
            }
        }
        out("done", "ok");
    }
}
