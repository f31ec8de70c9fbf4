#!/usr/bin/env bash
# Create .venv from the committed lock files (idempotent; fast when nothing changed): the runtime lock
# (requirements.lock, what the images install) + the development lock (tests, FiftyOne curation).
# Needs only python3.10 and access to the package registry; installs uv if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for c in python3.10 "$HOME/.pyenv/versions/3.10.13/bin/python3.10" /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  # pyenv installs 3.10 without putting it on PATH when another version is global
  for c in "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do [ -x "$c" ] && { echo "$c"; return 0; }; done
  return 1
}

PY=$(find_python) || { echo "error: python3.10 not found (synthdetect needs Python 3.10 for TFX 1.16)" >&2; exit 1; }
STAMP=.venv/.synthdetect-lock.sha256          # .venv matches the lock files + setup.py + RECIPE
LOCKS=(requirements.lock requirements-dev.lock)
MONGOD_STAMP=.venv/.synthdetect-mongod.sha256  # ... and FiftyOne's mongod loaded with that .venv
# How .venv is made; a new value re-syncs every existing .venv once. 2: with bytecode (.pyc) compiled at
# install. Without it every process compiles each module it imports (TensorFlow, TFX, Beam: two to
# three times the CPU of an import), and where PYTHONDONTWRITEBYTECODE is set it does so every time.
RECIPE="venv-recipe 2: --compile-bytecode"
want=$( (cat "${LOCKS[@]}" setup.py; echo "$RECIPE") | sha256sum | cut -d' ' -f1)

# FiftyOne's MongoDB: only curation needs it, so a failure is a warning, but it is not recorded as
# done: the next bootstrap tries again.
# With FIFTYONE_DATABASE_URI (an external MongoDB) the bundled one is not needed and not checked.
ensure_mongod() {
  [ -z "${FIFTYONE_DATABASE_URI:-}" ] || return 0
  if [ -f "$MONGOD_STAMP" ] && [ "$(cat "$MONGOD_STAMP")" = "$want" ]; then return 0; fi
  if infra/ensure_mongod.sh; then
    echo "$want" > "$MONGOD_STAMP"
  else
    rm -f "$MONGOD_STAMP"
    echo "bootstrap: warning: FiftyOne's MongoDB is not usable (see above); curation commands will fail; the next bootstrap retries" >&2
  fi
}

if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  ensure_mongod
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv" >&2
  "$PY" -m pip install --quiet --user uv >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "bootstrap: syncing .venv from ${LOCKS[*]} with uv" >&2
[ -x .venv/bin/python ] || uv venv --quiet .venv --python "$PY"
# --compile-bytecode: uv compiles the whole site-packages, packages it did not change included
uv pip sync --quiet --compile-bytecode --python .venv/bin/python "${LOCKS[@]}"
uv pip install --quiet --compile-bytecode --python .venv/bin/python --no-deps -e .
echo "$want" > "$STAMP"
ensure_mongod
echo "bootstrap: .venv ready" >&2
