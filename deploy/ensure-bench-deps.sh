#!/usr/bin/env bash
# What bench/collector_bench.py uses as its load generator: wrk (Debian's package), cheap enough
# that the collector, not the generator, is what is measured. Without it the bench falls back to an
# aiohttp client that costs much more CPU (and says so). Debian/Ubuntu.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
echo "[bench-deps] installing wrk" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
