#!/usr/bin/env bash
# Train the teacher on a lent GPU machine and write an exported model to OUT (one command for
# the device tool; docs/teacher-report.md, "Training on a lent GPU"):
#   bash scripts/gpu_teacher.sh --minutes 8 --init resources/models/teacher --out "$OUT"
# Wheels carried in .whl (WHEELS=DIR for another folder) are installed first, for packages that
# machine lacks (pedalboard, mido); everything else is scripts/gpu_teacher.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/stemtok-site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/stemtok-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_teacher.py "$@"
