"""Start-up of the `gridverify` command: wall time and peak memory of ``--help`` and of every command's
``--help``, each in a fresh process, against a limit of 1.5 s. Baselines run in the same run: the bare
interpreter (``python -c pass``) and ``import torch`` (what every command paid before the imports were
made lazy). The console script installed beside this interpreter is run directly (no pyenv shim).

    python bench/cli.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

LIMIT_S = 1.5
COMMANDS = ("", "verify", "report", "train", "study", "vnnlib", "demo")


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process running ``argv``, its output discarded."""
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss / 1024


def measure(argv: list[str], repeat: int) -> tuple[float, float, float]:
    """(median s, max s, peak MB) over ``repeat`` runs."""
    runs = [run_once(argv) for _ in range(repeat)]
    times = [t for t, _ in runs]
    return statistics.median(times), max(times), max(m for _, m in runs)


def script() -> str:
    beside = Path(sys.executable).with_name("gridverify")
    found = str(beside) if beside.is_file() else shutil.which("gridverify")
    if found is None:
        raise SystemExit("no gridverify console script found (pip install -e .)")
    return found


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()
    exe, py = script(), sys.executable
    rows = [
        ("python -c pass (baseline)", [py, "-c", "pass"]),
        ("python -c 'import torch' (baseline)", [py, "-c", "import torch"]),
    ]
    for c in COMMANDS:
        argv = [exe, *([c] if c else []), "--help"]
        rows.append((" ".join(["gridverify", *argv[1:]]), argv))
    print(f"{'command':<40}{'median s':>10}{'max s':>8}{'peak MB':>9}{'/ limit':>9}  {os.cpu_count()} CPUs")
    over = []
    for label, argv in rows:
        median, worst, mb = measure(argv, args.repeat)
        baseline = label.endswith("(baseline)")
        ratio = "" if baseline else f"{median / LIMIT_S:>9.2f}"
        print(f"{label:<40}{median:>10.3f}{worst:>8.3f}{mb:>9.0f}{ratio}")
        if not baseline and median > LIMIT_S:
            over.append(label)
    print(f"over {LIMIT_S} s: {', '.join(over) if over else 'none'}")
    return 1 if over or not families_agree() else 0


def families_agree() -> bool:
    """`verify --help` lists the families of `gridverify.grid.families` (the one table): check that reading
    it imports none of sympy, pandapower, torch."""
    before = set(sys.modules)
    from gridverify.grid.families import NAMES

    heavy = sorted({"sympy", "pandapower", "torch"} & (set(sys.modules) - before))
    print(f"gridverify.grid.families ({len(NAMES)} families) imports {', '.join(heavy) or 'nothing heavy'}")
    return not heavy


if __name__ == "__main__":
    raise SystemExit(main())
