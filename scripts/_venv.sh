# Sourced by the scripts: create .venv on first use and install the project with an extra.
# Usage: . scripts/_venv.sh EXTRA   (EXTRA: test, bench, or "" for the runtime only)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
extra="${1:-}"
stamp="$VENV/.installed-${extra:-base}"
stale=0
[ -f "$stamp" ] || stale=1
for f in pyproject.toml setup.py wscore/_speedups.c transports/_gate.c; do
  [ "$ROOT/$f" -nt "$stamp" ] && stale=1
done
if [ "$stale" = 1 ]; then
  if [ -n "$extra" ]; then
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extra]"
  else
    "$VENV/bin/python" -m pip install -q -e "$ROOT"
  fi
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
