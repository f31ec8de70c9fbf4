#!/usr/bin/env bash
# Make a headless Chromium available for the curator-App browser test (tests/test_curate_app.py).
# Prints the browser's path on stdout. Installs Debian's `chromium` package through apt only when no
# chromium/chrome binary is found (or $CHROMIUM points at a missing file). Needs root for apt-get.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] && { echo "$CHROMIUM"; exit 0; }
  echo "ensure_chromium: CHROMIUM=$CHROMIUM is not an executable" >&2; exit 1
fi
for name in chromium chromium-browser google-chrome chrome; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "ensure_chromium: no chromium found; install Debian's chromium package as root (apt-get install chromium) or set CHROMIUM=/path/to/chrome" >&2
  exit 1
fi
echo "ensure_chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -qq update >&2 || true
apt-get -qq install -y --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
