#!/usr/bin/env bash
# Make FiftyOne's bundled mongod (fiftyone-db 0.4.5, MongoDB 6.0) loadable.
# mongod 6.0 links against OpenSSL 1.1, which Debian 12 no longer ships; Debian bullseye's libssl1.1
# package is fetched through apt and installed only when mongod cannot load.
# Skipped entirely when FIFTYONE_DATABASE_URI points at an external MongoDB.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${FIFTYONE_DATABASE_URI:-}" ]; then
  echo "ensure_mongod: FIFTYONE_DATABASE_URI is set; using the external MongoDB" >&2; exit 0
fi
MONGOD=$(ls .venv/lib/python3.10/site-packages/fiftyone/db/bin/mongod 2>/dev/null || true)
[ -n "$MONGOD" ] || { echo "ensure_mongod: no bundled mongod in .venv (run infra/bootstrap.sh)" >&2; exit 1; }
if ! ldd "$MONGOD" | grep -q 'not found'; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "ensure_mongod: mongod needs libssl1.1 (missing: $(ldd "$MONGOD" | grep 'not found' | awk '{print $1}' | xargs)); install Debian bullseye's libssl1.1 as root or set FIFTYONE_DATABASE_URI" >&2
  exit 1
fi
echo "ensure_mongod: installing libssl1.1 from Debian bullseye for FiftyOne's mongod" >&2
tmp=$(mktemp -d)
cat > "$tmp/bullseye.list" <<'LIST'
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
LIST
APT_OPTS=(-o "Dir::Etc::SourceList=$tmp/bullseye.list" -o "Dir::Etc::SourceParts=-" -o "Dir::State::Lists=$tmp/lists" -o "APT::Get::List-Cleanup=0" -o "Acquire::AllowInsecureRepositories=0")
mkdir -p "$tmp/lists/partial"
apt-get "${APT_OPTS[@]}" -qq update >&2
(cd "$tmp" && apt-get "${APT_OPTS[@]}" -qq download libssl1.1 >&2)
dpkg -i "$tmp"/libssl1.1_*.deb >&2
rm -rf "$tmp"
if ldd "$MONGOD" | grep -q 'not found'; then
  echo "ensure_mongod: mongod still cannot load after installing libssl1.1" >&2; exit 1
fi
echo "ensure_mongod: mongod loads" >&2
