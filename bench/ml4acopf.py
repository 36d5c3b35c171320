"""The VNN-COMP ml4acopf benchmark: every instance of ``instances.csv``, each in a fresh process.

Prints a table (instance, verdict, wall seconds including process start, peak memory) and totals. The
shared data lives outside the project (third-party files); the default folder is ``../shared/data/
ml4acopf_2023`` next to the repository.

    python bench/ml4acopf.py [--folder DIR] [--cap SECONDS] [--only 14_ieee]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml4acopf_2023"


def run(folder: Path, onnx: str, prop: str, timeout: float) -> tuple[str, float, float]:
    """(verdict, wall seconds, peak RSS in MB) of one `gridverify vnnlib` process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "gridverify.cli", "vnnlib", str(folder / onnx), str(folder / prop)]
        cmd += ["--timeout", str(timeout), "--out", str(out)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        verdict = out.read_text().split("\n", 1)[0] if out.exists() else "error"
        if status != 0 and verdict != "error":
            verdict = f"{verdict} (exit {status})"
        return verdict, wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT, help="benchmark folder holding instances.csv")
    parser.add_argument("--cap", type=float, default=None, help="cap each instance's timeout (seconds)")
    parser.add_argument("--only", default="", help="run only instances whose ONNX name contains this")
    args = parser.parse_args()
    index = args.folder / "instances.csv"
    if not index.exists():
        print(f"no benchmark at {args.folder} (instances.csv missing): nothing to run", file=sys.stderr)
        raise SystemExit(2)
    rows = [r for r in csv.reader(index.open()) if r and args.only in r[0]]
    print("| instance | verdict | wall s | peak MB |\n|---|---|---|---|")
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for onnx, prop, timeout in rows:
        t = float(timeout) if args.cap is None else min(float(timeout), args.cap)
        verdict, wall, mem = run(args.folder, onnx, prop, t)
        case = Path(onnx).stem.split("_ml4acopf")[0]
        print(f"| {case} {Path(prop).stem} | {verdict} | {wall:.2f} | {mem:.0f} |", flush=True)
        totals[case] = totals.get(case, 0.0) + wall
        counts[f"{case} {verdict}"] = counts.get(f"{case} {verdict}", 0) + 1
    for case, total in totals.items():
        decided = sum(
            n for k, n in counts.items() if k.startswith(case) and k.split()[-1] in ("unsat", "sat")
        )
        total_n = sum(n for k, n in counts.items() if k.startswith(case))
        print(f"{case}: decided {decided}/{total_n}, total wall {total:.1f} s")


if __name__ == "__main__":
    main()
