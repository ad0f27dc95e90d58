#!/usr/bin/env bash
# Install the Autobahn testsuite (wstest, Python 2.7 only) into .venv-autobahn/.
#
# Idempotent: does nothing when .venv-autobahn/ already has the pinned set
# (stamp file next to it, refreshed when the requirements file changes).
#
# Needs: pyenv's CPython 2.7.18 (on the machine image) and a Python 3 with pip
# (used only to fetch virtualenv 20.21.1, the last release that can still
# create Python 2.7 environments). Everything else comes from PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${AUTOBAHN_VENV:-$ROOT/.venv-autobahn}"
BOOT_DIR="$ROOT/.venv-autobahn-bootstrap"
REQS="$ROOT/conformance/requirements-autobahn.txt"
STAMP="$ENV_DIR/.installed-autobahn"

if [ -x "$ENV_DIR/bin/wstest" ] && [ -f "$STAMP" ] && [ ! "$REQS" -nt "$STAMP" ]; then
  exit 0
fi

find_py27() {
  local cand
  if [ -n "${PYTHON27:-}" ]; then echo "$PYTHON27"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    cand="$(pyenv root)/versions/2.7.18/bin/python"
    if [ -x "$cand" ]; then echo "$cand"; return; fi
  fi
  for cand in "${HOME:-/root}/.pyenv/versions/2.7.18/bin/python" /usr/bin/python2.7 /usr/local/bin/python2.7; do
    if [ -x "$cand" ]; then echo "$cand"; return; fi
  done
  return 1
}

PY27="$(find_py27)" || {
  echo "conformance/setup.sh: no Python 2.7 found (expected \$(pyenv root)/versions/2.7.18/bin/python;" \
       "set PYTHON27=/path/to/python2.7)" >&2
  exit 1
}
PY3="${PYTHON3:-python3}"

echo "conformance/setup.sh: installing autobahntestsuite into ${ENV_DIR#$ROOT/} (python2.7: $PY27)"

if [ ! -x "$ENV_DIR/bin/python" ]; then
  if [ ! -f "$BOOT_DIR/virtualenv/__init__.py" ]; then
    timeout 600 "$PY3" -m pip install -q --disable-pip-version-check \
      --target "$BOOT_DIR" 'virtualenv==20.21.1'
  fi
  PYTHONPATH="$BOOT_DIR" timeout 300 "$PY3" -m virtualenv -q -p "$PY27" "$ENV_DIR"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
timeout 1200 "$ENV_DIR/bin/python" -m pip install -q -r "$REQS" 2>&1 \
  | grep -v -e 'DEPRECATION: Python 2.7' -e 'is ignored: it is neither a file nor a directory' \
           -e "legacy dependency resolver" -e "requires setuptools==44.0.0" || true
# pip's exit status is lost in the pipe above: check the result instead.
if ! timeout 120 "$ENV_DIR/bin/wstest" --autobahnversion >/dev/null 2>&1; then
  echo "conformance/setup.sh: wstest does not run after install" >&2
  exit 1
fi
touch "$STAMP"
echo "conformance/setup.sh: $("$ENV_DIR/bin/wstest" --autobahnversion 2>&1 | tr '\n' ' ')"
