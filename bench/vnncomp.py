"""A VNN-COMP benchmark folder, every instance in a fresh `gridverify vnnlib` process.

FOLDER holds ``instances.csv`` (onnx, vnnlib, timeout in seconds; paths relative to FOLDER; a name whose
file ships only as ``.gz`` is read compressed). Each instance runs with ``--timeout min(cap, timeout)``.
Per instance: the result, wall seconds from spawning the process to its exit (process start and imports
included), the child's peak RSS (``os.wait4``), and the published verdict where the folder has a
``reference_results.csv`` (onnx, vnnlib, official_result, ...). Flags: ``LATE`` when the process outlived
its timeout by more than 1 s, ``WRONG`` when a decided result contradicts the published one. A process is
killed 30 s after its timeout; it then reports ``no result``.

    python bench/vnncomp.py FOLDER [--cap S] [--only SUBSTR] [--skip K] [--first N]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 30.0  # how long past its timeout a process may run before it is killed


@dataclass(frozen=True)
class Instance:
    onnx: str
    vnnlib: str
    timeout_s: float

    @property
    def name(self) -> str:
        return f"{_stem(self.onnx)} {_stem(self.vnnlib)}"


@dataclass(frozen=True)
class Run:
    result: str  # first line of the result file, or "no result"
    wall_s: float
    peak_rss_gb: float
    exit_code: int
    stderr_tail: str  # last line the process wrote to stderr


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".onnx", ".vnnlib"):
        name = name.removesuffix(suffix)
    return name


def instances(folder: Path, only: str = "") -> list[Instance]:
    """The rows of ``folder/instances.csv`` whose onnx or vnnlib path contains ``only``."""
    with (folder / "instances.csv").open() as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    return [Instance(o.strip(), v.strip(), float(t)) for o, v, t in rows if only in o or only in v]


def published(folder: Path) -> dict[tuple[str, str], str]:
    """Published verdicts by (onnx stem, vnnlib stem), from ``reference_results.csv`` if there is one."""
    path = folder / "reference_results.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {(_stem(r["onnx"]), _stem(r["vnnlib"])): r["official_result"] for r in csv.DictReader(f)}


def run(folder: Path, instance: Instance, timeout_s: float) -> Run:
    """One `gridverify vnnlib` process on ``instance`` with ``--timeout timeout_s``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "gridverify.cli", "vnnlib", str(folder / instance.onnx)]
        cmd += [str(folder / instance.vnnlib), "--timeout", str(timeout_s), "--out", str(out)]
        start = time.perf_counter()
        with (Path(tmp) / "stderr.txt").open("w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            killer = threading.Timer(timeout_s + GRACE_S, _kill, (proc.pid,))
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            killer.cancel()
            err.seek(0)
            complaint = (err.read().strip().splitlines() or [""])[-1]
        lines = out.read_text().splitlines() if out.exists() else []
        code = os.waitstatus_to_exitcode(status)
        return Run(lines[0] if lines else "no result", wall, usage.ru_maxrss / 2**20, code, complaint)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def flags(instance: Instance, timeout_s: float, r: Run, reference: str | None) -> str:
    notes = []
    if r.wall_s > timeout_s + 1.0:
        notes.append("LATE")
    if reference in ("sat", "unsat") and r.result in ("sat", "unsat") and r.result != reference:
        notes.append("WRONG")
    if r.exit_code != 0:
        notes.append(f"exit {r.exit_code}")
    if r.result in ("error", "no result") and r.stderr_tail:
        notes.append(r.stderr_tail[:100])
    return " ".join(notes)


def bench(
    folder: Path, cap: float | None = None, only: str = "", first: int | None = None, skip: int = 0
) -> list[tuple[Instance, Run]]:
    """Run and print every selected instance of ``folder`` (after the first ``skip``, the first ``first``
    of them, when given), then totals; returns the runs."""
    reference = published(folder)
    print("| instance | result | wall s | timeout s | peak RSS GB | published | flags |")
    print("|---|---|---:|---:|---:|---|---|")
    runs = []
    for inst in instances(folder, only)[skip:][:first]:
        t = inst.timeout_s if cap is None else min(cap, inst.timeout_s)
        r = run(folder, inst, t)
        ref = reference.get((_stem(inst.onnx), _stem(inst.vnnlib)))
        row = [inst.name, r.result, f"{r.wall_s:.2f}", f"{t:g}", f"{r.peak_rss_gb:.2f}", ref or "-"]
        print("| " + " | ".join([*row, flags(inst, t, r, ref)]) + " |", flush=True)
        runs.append((inst, r))
    _totals(runs)
    return runs


def _totals(runs: list[tuple[Instance, Run]]) -> None:
    if not runs:
        print("no instance selected")
        return
    counts = Counter(r.result for _, r in runs)
    wall = sum(r.wall_s for _, r in runs)
    peak = max(r.peak_rss_gb for _, r in runs)
    shown = ", ".join(f"{k} {n}" for k, n in counts.most_common())
    print(f"\n{len(runs)} instances: {shown}; total wall {wall:.1f} s; max peak RSS {peak:.2f} GB")


def main(default_folder: Path | None = None, doc: str | None = None) -> None:
    """The command line; with ``default_folder`` the folder argument may be left out."""
    parser = argparse.ArgumentParser(
        description=doc or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    folder_help = "benchmark folder holding instances.csv"
    if default_folder is None:
        parser.add_argument("folder", type=Path, help=folder_help)
    else:
        parser.add_argument("folder", type=Path, nargs="?", default=default_folder, help=folder_help)
    parser.add_argument("--cap", type=float, default=None, help="cap each instance's timeout (seconds)")
    parser.add_argument("--only", default="", help="run only instances whose paths contain this")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first K instances selected")
    parser.add_argument("--first", type=int, default=None, help="run only the first N instances selected")
    args = parser.parse_args()
    if not (args.folder / "instances.csv").exists():
        print(f"no benchmark at {args.folder} (instances.csv missing): nothing to run", file=sys.stderr)
        raise SystemExit(2)
    bench(args.folder, args.cap, args.only, args.first, args.skip)


if __name__ == "__main__":
    main()
