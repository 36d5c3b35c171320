#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB -- nothing to convert ahead of time; fail fast on a
# missing file so the harness reports it before the timer starts, and stop the instance that our own
# run_instance.sh left running (its PID is in the pid file; nobody else's process is touched).
set -euo pipefail
[ "$1" = "v1" ] || { echo "expected version v1, got $1" >&2; exit 1; }
for f in "$3" "$4"; do
    [ -f "$f" ] || [ -f "$f.gz" ] || { echo "missing $f" >&2; exit 1; }
done
PIDFILE="${TMPDIR:-/tmp}/gridverify-vnncomp-$(id -u).pid"
if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    # only if that PID is still a `gridverify vnnlib` (a PID may have been reused since)
    if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "gridverify.* vnnlib "; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
fi
exit 0
