#!/usr/bin/env bash
# Make FiftyOne's bundled mongod (fiftyone-db 0.4.5, MongoDB 6.0) loadable.
# mongod 6.0 links against OpenSSL 1.1, which Debian 12 no longer ships; Debian bullseye's libssl1.1
# package is fetched through apt and installed only when mongod cannot load.
# Skipped entirely when FIFTYONE_DATABASE_URI points at an external MongoDB.
#
# Exit 0 only when mongod loads (checked after any install by running `mongod --version`); otherwise
# one line naming the missing libraries and exit 1. `ldd`'s output is captured first and tested
# afterwards: `ldd … | grep -q` under pipefail fails whenever grep exits before ldd has written
# everything (SIGPIPE), which silently skipped the install.
#
# For tests only (tests/test_infra.py), never set in normal use:
#   ENSURE_MONGOD_BIN        the binary to check instead of .venv's bundled mongod
#   ENSURE_MONGOD_INSTALLER  an executable run instead of the apt install (no root/apt-get check)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${FIFTYONE_DATABASE_URI:-}" ]; then
  echo "ensure_mongod: FIFTYONE_DATABASE_URI is set; using the external MongoDB" >&2; exit 0
fi
MONGOD=${ENSURE_MONGOD_BIN:-.venv/lib/python3.10/site-packages/fiftyone/db/bin/mongod}
[ -x "$MONGOD" ] || { echo "ensure_mongod: no bundled mongod at $MONGOD (run infra/bootstrap.sh)" >&2; exit 1; }

# Prints the libraries mongod cannot find (space-separated; empty when none). Fails if ldd fails.
missing_libs() {
  local out
  if ! out=$(ldd "$MONGOD" 2>&1); then
    echo "ensure_mongod: ldd $MONGOD failed: ${out//$'\n'/ }" >&2; return 1
  fi
  awk '/=> not found/ {printf "%s%s", sep, $1; sep = " "}' <<<"$out"
}

# mongod loads: no library missing and the binary actually starts.
loads() {
  local missing
  missing=$(missing_libs) || return 1
  [ -z "$missing" ] && "$MONGOD" --version >/dev/null 2>&1
}

install_libssl11() {
  if [ -n "${ENSURE_MONGOD_INSTALLER:-}" ]; then
    "$ENSURE_MONGOD_INSTALLER" >&2; return
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "ensure_mongod: mongod cannot load (missing: $1); install Debian bullseye's libssl1.1 as root or set FIFTYONE_DATABASE_URI" >&2
    exit 1
  fi
  echo "ensure_mongod: installing libssl1.1 from Debian bullseye for FiftyOne's mongod (missing: $1)" >&2
  # called in an `||` list, where set -e does not apply: every step checks its own status
  local tmp
  tmp=$(mktemp -d) || return 1
  cat > "$tmp/bullseye.list" <<'LIST'
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
LIST
  local apt_opts=(-o "Dir::Etc::SourceList=$tmp/bullseye.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$tmp/lists" -o "APT::Get::List-Cleanup=0" -o "Acquire::AllowInsecureRepositories=0")
  local rc=0
  mkdir -p "$tmp/lists/partial" && apt-get "${apt_opts[@]}" -qq update >&2 \
    && (cd "$tmp" && apt-get "${apt_opts[@]}" -qq download libssl1.1 >&2) \
    && dpkg -i "$tmp"/libssl1.1_*.deb >&2 || rc=1
  rm -rf "$tmp"
  return $rc
}

if loads; then exit 0; fi
missing=$(missing_libs)
if [ -z "$missing" ]; then
  echo "ensure_mongod: $MONGOD does not start (no library is missing; try running it with --version)" >&2; exit 1
fi
install_libssl11 "$missing" || { echo "ensure_mongod: installing libssl1.1 failed" >&2; exit 1; }
if ! loads; then
  echo "ensure_mongod: mongod still cannot load after installing libssl1.1 (missing: $(missing_libs || true))" >&2
  exit 1
fi
echo "ensure_mongod: mongod loads" >&2
