#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# The PID goes to a pid file first so that prepare_instance.sh can stop this instance, and only it, if it
# is still running; `exec` keeps the PID (and the process start time, which --timeout counts from).
set -uo pipefail
[ "$1" = "v1" ] || { echo "expected version v1, got $1" >&2; exit 1; }
echo $$ > "${TMPDIR:-/tmp}/gridverify-vnncomp-$(id -u).pid"
exec gridverify vnnlib "$3" "$4" --out "$5" --timeout "$6"
