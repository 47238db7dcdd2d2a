#!/usr/bin/env bash
# What tests/integration/test_sdk_languages.py needs: Node.js with npm, Go, a JDK with Maven, and the
# published server SDKs pinned in tests/sdk/ (node/package-lock.json, go/go.sum, java/pom.xml); and the
# ClickHouse clients pinned in tests/drivers/ that tests/integration/test_sql_drivers*.py run (go/go.sum:
# clickhouse-go, as Grafana's data source uses; node/package-lock.json: @clickhouse/client; java/pom.xml:
# the ClickHouse JDBC driver).
# Idempotent: each part is redone only when its pin file changed. The toolchains are not installed
# here (distribution packages are often too old for the SDKs); a missing one is an error that says so.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in node npm go java javac mvn; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[sdk-deps] missing toolchain: ${missing[*]} (the SDK tests need Node.js >= 20.19 with npm," \
       "Go >= 1.25 and a JDK >= 17 with Maven on PATH)" >&2
  exit 1
fi

stamp=tests/sdk/node/node_modules/.installed-$(cksum tests/sdk/node/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] npm ci in tests/sdk/node" >&2
  npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

# the module download and a first build (which fills Go's build cache, so the test's build is quick)
stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/frontend-pulse
mkdir -p "$stamp_dir"
stamp=$stamp_dir/sdk-go-$(cat tests/sdk/go/go.sum tests/sdk/go/main.go | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] go build in tests/sdk/go" >&2
  (cd tests/sdk/go && go mod download && go build -o sdkprobe .)
  touch "$stamp"
fi

# the Go ClickHouse driver probe of the SQL endpoint (tests/integration/test_sql_drivers_go.py), same way
stamp=$stamp_dir/driver-go-$(cat tests/drivers/go/go.sum tests/drivers/go/main.go | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] go build in tests/drivers/go" >&2
  (cd tests/drivers/go && go mod download && go build -o driverprobe .)
  touch "$stamp"
fi

stamp=tests/sdk/java/target/.installed-$(cksum tests/sdk/java/pom.xml | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] mvn dependency:copy-dependencies in tests/sdk/java" >&2
  rm -rf tests/sdk/java/target/dependency
  mvn -q -B -f tests/sdk/java/pom.xml dependency:copy-dependencies
  touch "$stamp"
fi

stamp=tests/drivers/node/node_modules/.installed-$(cksum tests/drivers/node/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] npm ci in tests/drivers/node" >&2
  npm ci --prefix tests/drivers/node --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

stamp=tests/drivers/java/target/.installed-$(cksum tests/drivers/java/pom.xml | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[sdk-deps] mvn dependency:copy-dependencies in tests/drivers/java" >&2
  rm -rf tests/drivers/java/target/dependency
  mvn -q -B -f tests/drivers/java/pom.xml dependency:copy-dependencies
  touch "$stamp"
fi
