#!/usr/bin/env bash
# What the browser test needs (tests/integration/test_browser.py): Debian's Chromium, Node.js with
# npm, and the published browser SDKs + playwright-core pinned in tests/browser/package-lock.json.
# Idempotent; only installs what is missing. Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[browser-deps] installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
stamp=tests/browser/node_modules/.installed-$(cksum tests/browser/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "[browser-deps] npm ci in tests/browser" >&2
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
