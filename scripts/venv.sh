#!/usr/bin/env bash
# Creates .venv and installs shoal into it (idempotent).
#   scripts/venv.sh          runtime only
#   scripts/venv.sh dev      with everything the tests and benchmarks need
#   scripts/venv.sh etcd     with one extra (here etcd membership); any extra works
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.installed-${extras:-runtime}"
# Reinstall only when the project metadata, the pinned versions or the C extension
# (built by the install) changed since the last install. pyproject.toml gives ranges;
# constraints.txt the exact versions installed here and in CI.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] ||
    [ hatch_build.py -nt "$stamp" ] || [ src/shoal/_speedups.c -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt -e "$spec"
    touch "$stamp"
fi
