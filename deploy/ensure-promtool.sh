#!/usr/bin/env bash
# promtool, Prometheus' own checker, for tests/unit/test_deploy_config.py (`promtool check config`,
# `check rules` and `test rules` on deploy/prometheus). Built from source with Go from the Go module
# proxy (no registry here ships a promtool binary; Debian's package is an older 2.x), at the pinned
# version below, into ${XDG_CACHE_HOME:-~/.cache}/frontend-pulse/promtool-<version>/promtool.
# Idempotent: a no-op once that binary exists. A cold build downloads ~1.8 GB of modules and compiles
# for ~10 CPU-minutes (5-15 minutes on 2 cores, depending on what else runs; ~3.6 GB of disk meanwhile).
# The module and build caches it uses are its own and are deleted after a successful build (only the
# ~125 MB binary stays), so Go's shared caches are left alone.
# Usage: deploy/ensure-promtool.sh [--path]   (--path: print the binary's path, build nothing)
set -euo pipefail

# Prometheus' Go module tags v0.3XX.Y are Prometheus 3.XX.Y; tests/unit/test_deploy_config.py reads
# this line to find the binary.
PROMTOOL_VERSION=v0.316.0
MODULE=github.com/prometheus/prometheus/cmd/promtool
release=${PROMTOOL_VERSION#v0.}                 # 316.0
release=${release:0:1}.${release:1}             # 3.16.0, what `promtool --version` prints

cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/frontend-pulse/promtool-$PROMTOOL_VERSION
binary=$cache_dir/promtool
if [ "${1:-}" = "--path" ]; then
  echo "$binary"
  exit 0
fi
if [ -x "$binary" ]; then
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "[promtool] go is not on PATH: building promtool $PROMTOOL_VERSION needs Go >= 1.26.7" \
       "(its go.mod says so)" >&2
  exit 1
fi

# one build at a time (several worktrees may run `make test` at once); the winner's binary serves the rest
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9
if [ -x "$binary" ]; then
  exit 0
fi

work=$cache_dir/build
mkdir -p "$work/bin"
echo "[promtool] building $MODULE@$PROMTOOL_VERSION with $(go env GOVERSION) (cold: several minutes)" >&2
if ! (cd "$work" && GOBIN="$work/bin" GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOFLAGS= GOWORK=off \
       go install -trimpath -ldflags "-X github.com/prometheus/common/version.Version=$release" \
         "$MODULE@$PROMTOOL_VERSION"); then
  echo "[promtool] FAILED: go install $MODULE@$PROMTOOL_VERSION (output above). Its partial caches stay" \
       "in $work for the next try; delete that folder to start over." >&2
  exit 1
fi
if ! "$work/bin/promtool" --version >/dev/null; then
  echo "[promtool] FAILED: the built $work/bin/promtool does not run" >&2
  exit 1
fi
mv "$work/bin/promtool" "$binary"
GOMODCACHE="$work/mod" go clean -modcache
rm -rf "$work"
echo "[promtool] installed $binary" >&2
