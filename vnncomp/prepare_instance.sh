#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB -- nothing to convert ahead of time; fail fast on a
# missing file so the harness reports it before the timer starts.
set -euo pipefail
[ "$1" = "v1" ] || { echo "expected version v1, got $1" >&2; exit 1; }
[ -f "$3" ] && [ -f "$4" ] || { echo "missing $3 or $4" >&2; exit 1; }
pkill -f "gridverify vnnlib" 2>/dev/null || true
exit 0
