#!/usr/bin/env bash
# Create .venv from the committed lock file (idempotent; fast when nothing changed).
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
STAMP=.venv/.synthdetect-lock.sha256
want=$(cat requirements.lock setup.py | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv" >&2
  "$PY" -m pip install --quiet --user uv >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "bootstrap: syncing .venv from requirements.lock with uv" >&2
[ -x .venv/bin/python ] || uv venv --quiet .venv --python "$PY"
uv pip sync --quiet --python .venv/bin/python requirements.lock
uv pip install --quiet --python .venv/bin/python --no-deps -e .
infra/ensure_mongod.sh || echo "bootstrap: warning: FiftyOne's MongoDB is not usable (see above); curation commands will fail" >&2
echo "$want" > "$STAMP"
echo "bootstrap: .venv ready" >&2
