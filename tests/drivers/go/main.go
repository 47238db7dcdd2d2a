// driverprobe: the sink's SQL endpoint through clickhouse-go/v2 over HTTP, connected the way Grafana's
// ClickHouse data source (grafana/clickhouse-datasource pkg/plugin/driver.go) connects: database/sql
// via clickhouse.OpenDB, protocol HTTP, its client info, dial and query timeouts, no custom settings.
//
// It pings, then runs the queries it reads from stdin, one JSON object a line:
//
//	{"key": "k", "sql": "SELECT ...", "params": {"name": "value"}, "args": [1], "exec": false}
//
// params are server-side query parameters ({name:Type} in the SQL, sent as param_name), args are
// bound by the driver into ? placeholders, exec runs the statement with ExecContext. Each answer is
// one JSON line: {"key", "columns", "types", "rows"} or {"key", "error", "code"} where code is the
// ClickHouse exception code found in the error (0 when none).
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type job struct {
	Key    string            `json:"key"`
	SQL    string            `json:"sql"`
	Params map[string]string `json:"params"`
	Args   []any             `json:"args"`
	Exec   bool              `json:"exec"`
}

var codeInError = regexp.MustCompile(`Code: (\d+)`)

func main() {
	addr := flag.String("addr", "127.0.0.1:8124", "host:port of the SQL endpoint")
	user := flag.String("user", "default", "user name")
	password := flag.String("password", "", "password (PULSE_SINK_SQL_ACCESS_KEY)")
	database := flag.String("database", "", "default database (the data source's 'Default database'; empty = the server's)")
	compress := flag.String("compress", "none", "none | lz4 | gzip (gzip: what the Grafana plugin uses over HTTP)")
	flag.Parse()

	methods := map[string]clickhouse.CompressionMethod{
		"none": clickhouse.CompressionNone, "lz4": clickhouse.CompressionLZ4, "gzip": clickhouse.CompressionGZIP}
	method, ok := methods[*compress]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown -compress %q\n", *compress)
		os.Exit(2)
	}
	db := clickhouse.OpenDB(&clickhouse.Options{
		Addr:     []string{*addr},
		Protocol: clickhouse.HTTP,
		Auth:     clickhouse.Auth{Database: *database, Username: *user, Password: *password},
		ClientInfo: clickhouse.ClientInfo{Products: []struct{ Name, Version string }{
			{Name: "grafana", Version: "12.0.0"}, {Name: "clickhouse-datasource", Version: "4.20.0"}}},
		Compression: &clickhouse.Compression{Method: method},
		DialTimeout: 10 * time.Second, // the plugin's defaults: dialTimeout 10, queryTimeout 60
		ReadTimeout: 60 * time.Second,
		Settings:    clickhouse.Settings{},
	})
	defer db.Close()

	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := db.PingContext(ctx)
	cancel()
	if err != nil {
		_ = out.Encode(failure("ping", err))
	} else {
		_ = out.Encode(map[string]any{"key": "ping", "ok": true})
	}

	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var j job
		if err := json.Unmarshal(scanner.Bytes(), &j); err != nil {
			fmt.Fprintf(os.Stderr, "bad job line: %v\n", err)
			os.Exit(2)
		}
		_ = out.Encode(run(db, j))
	}
}

func run(db *sql.DB, j job) map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if len(j.Params) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters(j.Params)))
	}
	if j.Exec {
		if _, err := db.ExecContext(ctx, j.SQL, j.Args...); err != nil {
			return failure(j.Key, err)
		}
		return map[string]any{"key": j.Key, "ok": true}
	}
	rows, err := db.QueryContext(ctx, j.SQL, j.Args...)
	if err != nil {
		return failure(j.Key, err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return failure(j.Key, err)
	}
	names, typeNames := make([]string, len(types)), make([]string, len(types))
	for i, t := range types {
		names[i], typeNames[i] = t.Name(), t.DatabaseTypeName()
	}
	table := [][]any{}
	for rows.Next() {
		cells := make([]any, len(types))
		for i, t := range types {
			cells[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(cells...); err != nil {
			return failure(j.Key, err)
		}
		row := make([]any, len(cells))
		for i, cell := range cells {
			row[i] = plain(reflect.ValueOf(cell).Elem())
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return failure(j.Key, err)
	}
	return map[string]any{"key": j.Key, "columns": names, "types": typeNames, "rows": table}
}

// plain turns a scanned Go value into JSON-friendly data: times as RFC 3339 in UTC with milliseconds,
// nil pointers as null, maps and slices element by element, non-finite floats as strings.
func plain(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Struct, reflect.Array, reflect.Slice:
		if t, ok := v.Interface().(time.Time); ok {
			return t.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		if s, ok := v.Interface().(fmt.Stringer); ok { // UUID, decimal, net.IP
			return s.String()
		}
	case reflect.Pointer:
		if !v.IsNil() && v.Elem().Kind() == reflect.Struct && v.Elem().Type() != reflect.TypeOf(time.Time{}) {
			if s, ok := v.Interface().(fmt.Stringer); ok { // *big.Int (Int128, UInt256)
				return s.String()
			}
		}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Slice, reflect.Array: // Array(UInt8) scans into []uint8: numbers, not text
		items := make([]any, v.Len())
		for i := range items {
			items[i] = plain(v.Index(i))
		}
		return items
	case reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[fmt.Sprint(plain(k))] = plain(v.MapIndex(k))
		}
		return m
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
		return f
	}
	return v.Interface()
}

func failure(key string, err error) map[string]any {
	code := 0
	var exception *clickhouse.Exception
	if errors.As(err, &exception) {
		code = int(exception.Code)
	} else if m := codeInError.FindStringSubmatch(err.Error()); m != nil {
		code, _ = strconv.Atoi(m[1])
	}
	return map[string]any{"key": key, "error": err.Error(), "code": code}
}
