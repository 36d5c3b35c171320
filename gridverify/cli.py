"""The `gridverify` command line.

Every subcommand is one row of `COMMANDS`: the function that adds its parser and the function that runs
it. Start-up is kept light: building the parser imports nothing heavy (no torch, pandapower, sympy), so
that ``gridverify --help`` and ``gridverify COMMAND --help`` answer at once (``bench/cli.py`` times them).
A command's own modules are imported when it runs; ``train`` and ``study`` register their full parsers
only when named (the others see a one-line stub for the command list); a light command (``demo``,
``vnnlib``) builds only the light commands' parsers.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gzip
import importlib.util
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from gridverify.deadline import process_start

if TYPE_CHECKING:
    from gridverify.deadline import Deadline
    from gridverify.vnncomp import InstanceResult

DESCRIPTION = """\
gridverify proves, or refutes with a concrete load, that a neural-network surrogate of AC optimal power
flow respects the grid's physics over a whole region of loads, using sound linear bounds (IBP, CROWN,
alpha-CROWN) on one nonlinear computation graph.
"""


Subparsers = argparse._SubParsersAction


class Invocation(NamedTuple):
    """How the command line was called: ``started`` (the ``time.monotonic()`` instant a deadline counts
    from) and ``own_process`` (the command itself, not a Python caller: see `main`)."""

    started: float
    own_process: bool


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add`` adds its parser to the subparsers, ``run`` runs the parsed arguments and
    returns the exit status. ``light``: it needs neither pandapower nor the grid packages (its parser
    and the other light ones are all a light command builds); ``stub``: the one-line help shown for a
    heavy parser when another command (or none) is named (None: always the full parser)."""

    add: Callable[[Subparsers], object]
    run: Callable[[argparse.Namespace, Invocation], int]
    light: bool = False
    stub: str | None = None


def _docstring(module: str) -> str | None:
    """A module's docstring, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text()))


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (None when absent or when help is asked before it)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--threads":
            skip = True
        elif not token.startswith("-"):
            return token
        elif token in ("-h", "--help"):
            return None
    return None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, one subparser per row of `COMMANDS`; for a light command only the light
    subcommands, so that a VNN-COMP instance does not pay for importing pandapower at every process start;
    a stub for each heavy command but ``command``."""
    parser = argparse.ArgumentParser(prog="gridverify", description=DESCRIPTION)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: bound computations on these graphs are many small tensor "
        "ops, and more threads mostly add synchronisation; raise it for very large cases)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    light = command in COMMANDS and COMMANDS[command].light
    for name, cmd in COMMANDS.items():
        if light and not cmd.light:
            continue
        if cmd.stub is not None and name != command:
            sub.add_parser(name, help=cmd.stub, add_help=False)
        else:
            cmd.add(sub)
    return parser


def _add_demo(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo",
        help="bound a line's power flow behind a small network with IBP, CROWN and alpha-CROWN",
        description=_docstring("gridverify.demo"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--radius", type=float, default=0.1, help="half-width of the load box in pu (default 0.1)")


def _add_vnnlib(sub: Subparsers) -> None:
    v = sub.add_parser(
        "vnnlib",
        help="decide a VNN-COMP instance (ONNX model + VNN-LIB property) and write the result file",
        description="Decide whether any input in the VNN-LIB box drives the ONNX model into the unsafe set. "
        "Writes unsat (proved), sat with the counterexample (checked in float64 and onnxruntime), unknown, "
        "timeout or error to --out, and prints it.",
        epilog=VNNLIB_EXIT,
    )
    v.add_argument("model", type=Path, help="ONNX model (.onnx or .onnx.gz)")
    v.add_argument("prop", type=Path, help="VNN-LIB property (.vnnlib or .vnnlib.gz)")
    v.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="wall seconds for the whole command, counted from process start (default 60): shortly before, "
        "`timeout` is written and the process ends",
    )
    v.add_argument(
        "--memory-gb",
        type=float,
        default=_default_memory_gb(),
        help="memory budget in GB: sizes the search, and caps the address space "
        f"(default: half the machine's memory, at most 8; here {_default_memory_gb():.1f})",
    )
    v.add_argument("--out", type=Path, help="result file (VNN-COMP format); default: print only")
    v.add_argument("--progress", action="store_true", help="show a progress bar during branch and bound")


def _add_study(sub: Subparsers) -> None:
    from gridverify.study.cli import add_study_parser

    add_study_parser(sub)


STUDY_HELP = "run a study (cases x surrogates x families x regions) resumably, locally or on Dask"
TRAIN_HELP_LINE = "train an ACOPF surrogate: a case folder (case.toml) or a grid file (.m / .json)"
TRAIN_HELP = """Train an ACOPF surrogate and write surrogate.pt, metrics.json and README.md into its case
folder (see gridverify.surrogate.train).

CASE is a shipped case name (e.g. case14), a case folder with case.toml (its settings are used; see
cases/README.md), or a grid file: a MATPOWER / PGLib-OPF .m case or a pandapower .json net. For a grid file,
a case folder is written first (--out: case.toml from --region, --samples, --hidden, --epochs, --seed,
--stability, --labeller, and a copy of the grid file); `gridverify verify FOLDER` then verifies the result.

Labels: AC-OPF solutions of loads drawn uniformly in the region (IPOPT with exact derivatives by default,
PYPOWER's runopf as the cross-check), cached as they come: Ctrl-C stops within seconds and the same command
resumes after the labels solved so far."""


def _add_train(sub: Subparsers) -> argparse.ArgumentParser:
    """``train CASE|GRID [--region R] [--samples N] [--hidden AxB] [--out DIR] [--workers N] ...``, without
    importing the training code (the package imports torch, pandapower and the solvers): ``--help`` stays
    fast."""
    p = sub.add_parser(
        "train",
        help=TRAIN_HELP_LINE,
        description=TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("case", help="a shipped case name (e.g. case14), a case folder with case.toml, or a grid "
                   "file (.m MATPOWER / PGLib-OPF case, .json pandapower net)")  # fmt: skip
    grid = p.add_argument_group("for a grid file (written into the new folder's case.toml)")
    grid.add_argument("--out", type=Path, help="case folder to write (default: ./<grid file stem>)")
    grid.add_argument("--region", default=None,
                      help="load region: '+-P%%' or 'LO:HI' load factors (default +-10%%)")  # fmt: skip
    grid.add_argument("--samples", type=int, default=None, help="AC-OPF labels (default 2000)")
    grid.add_argument("--hidden", default=None, help="hidden layer widths, e.g. 64x64 (default 128x128)")
    grid.add_argument("--epochs", type=int, default=None, help="training epochs (default 1000)")
    grid.add_argument("--seed", type=int, default=None, help="seed of the loads and the weights (default 0)")
    grid.add_argument("--stability", type=float, default=None,
                      help="weight of the relu-stability penalty (stability_weight; default 0): 0.001 gives "
                      "surrogates whose constraints verify decides (README: bench/stability.py)")  # fmt: skip
    grid.add_argument("--labeller", choices=("ipopt", "runopf"), default=None,
                      help="AC-OPF solver (default ipopt; runopf: PYPOWER, .m files only)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="AC-OPF processes (default 2)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the label cache")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "gridverify" / "datasets",
        help="label cache folder (default ~/.cache/gridverify/datasets)",
    )
    return p


def _run_train(args: argparse.Namespace, _: Invocation) -> int:
    from gridverify.surrogate.cli import run_train

    return run_train(args)


def _default_memory_gb() -> float:
    """Half the machine's memory, at most 8 GB."""
    try:
        total_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return 8.0
    return min(8.0, total_gb / 2)


VERIFY_HELP = """\
Verify a case's neural-network surrogate over a region of loads: for every constraint of the AC power
flow (power balance at every bus, thermal limits at both ends of every branch, angle differences,
voltage and generator limits), prove that it holds for EVERY load in the region (verified), or find a
load where it fails (violated, re-checked in float64 and replayed in pandapower's power flow), or give
a certified interval [worst found, bound] when the time budget ends first (unknown).

Writes DIR/certificate.json (versioned JSON, see docs/certificate.md) and DIR/report.md with figures.

Exit codes: 0 every physical limit verified; 1 some violated; 3 none violated but some unknown; 2 bad
input (unknown case, malformed region, unwritable output folder, ...) or out of memory before any
answer. The balance residuals (judged at 0.01 pu by default) set the exit code only with --strict.

Memory stays inside --memory-gb (the address space is capped there): the rows are blocked to fit, and
rows whose bounding or search still runs out of memory keep the answer they had (case1354, all 14421
constraints in 300 s: 5.7 GiB peak RSS with the default 8).
"""


def _add_verify(sub: Subparsers) -> None:
    from gridverify.grid.families import NAMES  # the family table alone: no sympy, pandapower or torch

    p = sub.add_parser(
        "verify",
        help="verify a case's surrogate against every AC power-flow constraint over a load region",
        description=VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "case",
        help="a shipped case name (see cases/, e.g. case14), a case folder, or a grid file "
        "(PGLib/MATPOWER .m, pandapower .json) given with --surrogate",
    )
    p.add_argument(
        "--surrogate", type=Path, help="surrogate weights (surrogate.pt as `gridverify train` writes)"
    )
    p.add_argument(
        "--region",
        help="load region: '+-10%%' (each load within 10%% of nominal), '0.9:1.1' (factor range); "
        "default: the case's training region",
    )
    p.add_argument(
        "--constraints",
        nargs="+",
        metavar="FAMILY",
        help="constraint families to verify (default: all): " + ", ".join(NAMES),
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="violation tolerance in each family's unit")
    p.add_argument(
        "--family-tolerance",
        action="append",
        default=[],
        metavar="FAMILY=T",
        help="a family's own tolerance, e.g. p_balance=0.05 (repeatable; units: pu, rad, pu^2 for thermal; "
        "default 0.01 pu for p_balance and q_balance, --tolerance for the others)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="wall seconds for the whole command from process start: search, replay, report (default 120)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the bounds (cpu, cuda; default cpu)")
    p.add_argument(
        "--memory-gb",
        type=float,
        default=_default_memory_gb(),
        help="memory budget in GB: sizes the screen's blocks of rows and points, the falsifier and the "
        "search, and caps the address space (an allocation past it keeps the rows it hit at the answer "
        "they had; default: half the machine's memory, at most 8; here "
        f"{_default_memory_gb():.1f})",
    )
    p.add_argument("--out", type=Path, help="output folder (default reports/<case>)")
    p.add_argument("--no-replay", action="store_true", help="skip the pandapower replay of violations")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit code counts the balance residuals too (by default only physical limits set it)",
    )


def _add_report(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="re-render report.md and figures from a certificate.json",
        description="Re-render the report (report.md and figures) of a certificate written by "
        "`gridverify verify`, into the certificate's folder or --out.",
    )
    p.add_argument("certificate", type=Path, help="certificate.json written by gridverify verify")
    p.add_argument("--out", type=Path, help="output folder (default: the certificate's folder)")


def _verify(args: argparse.Namespace, call: Invocation) -> int:
    from gridverify.grid.families import NAMES as known
    from gridverify.verify.cli import run_verify

    unknown = [f for f in args.constraints or () if f not in known]
    if unknown:
        print(f"gridverify verify: --constraints: unknown family {', '.join(map(repr, unknown))} "
              f"(choose from {', '.join(known)})", file=sys.stderr)  # fmt: skip
        return 2
    if not (math.isfinite(args.memory_gb) and args.memory_gb > 0):
        print(
            f"gridverify verify: --memory-gb must be a positive number, got {args.memory_gb}", file=sys.stderr
        )
        return 2
    # an accelerator's driver maps far more address space than it uses: the cap is for CPU runs only
    cap = _address_space_cap(args.memory_gb) if args.device == "cpu" else contextlib.nullcontext()
    with cap:
        return run_verify(args, call.started)


def _report(args: argparse.Namespace, _: Invocation) -> int:
    from gridverify.verify.cli import run_report

    return run_report(args)


VNNLIB_EXIT = """exit codes: 0 a result was written (unsat, sat, unknown, timeout); 1 error (written to the
result file, reason on stderr); 2 bad arguments or an unwritable --out, found before any work"""


def _vnnlib_usage_error(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run (checked before any work), or None."""
    from gridverify.deadline import unwritable

    if not (math.isfinite(args.timeout) and args.timeout > 0):
        return f"--timeout must be a positive number of seconds, got {args.timeout}"
    if not (math.isfinite(args.memory_gb) and args.memory_gb > 0):
        return f"--memory-gb must be a positive number, got {args.memory_gb}"
    return None if args.out is None else unwritable(args.out)


def _vnnlib(args: argparse.Namespace, call: Invocation) -> int:
    """Run one instance; ``call.started`` is the ``time.monotonic()`` instant ``--timeout`` counts from. At
    the deadline the watchdog writes ``timeout`` and, in a process of our own, ends it
    (`gridverify.deadline`); called from Python (``own_process`` False) it leaves the caller's process
    running."""
    from gridverify.deadline import Deadline, ResultFile, Watchdog

    started, own_process = call

    problem = _vnnlib_usage_error(args)
    if problem is not None:
        print(f"gridverify vnnlib: {problem}", file=sys.stderr)
        return 2
    deadline, result_file = Deadline(started, args.timeout), ResultFile(args.out)
    scratch = tempfile.TemporaryDirectory(prefix="gridverify-")
    try:
        with Watchdog(deadline, result_file, before_exit=scratch.cleanup, own_process=own_process):
            with _address_space_cap(args.memory_gb):
                result = _decide(args, deadline, Path(scratch.name))
            if not result_file.finish(result.text()):
                print(f"timeout ({deadline.elapsed_s():.2f} s; {result.status} came after the deadline)")
                return 0  # the watchdog answered first (and, in a process of our own, is ending it)
    finally:
        scratch.cleanup()
    print(f"{result.status} ({result.seconds:.2f} s{', ' + result.detail if result.detail else ''})")
    code = 1 if result.status == "error" else 0
    if own_process:  # the answer is written: skip the interpreter's teardown (torch's takes up to a second)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _decide(args: argparse.Namespace, deadline: Deadline, scratch: Path) -> InstanceResult:
    """The instance's result; exceptions become ``unknown`` (out of memory) or ``error``, reason on stderr."""
    try:
        from gridverify.vnncomp import SETTINGS, verify_instance

        model, prop = _plain_onnx(_existing(args.model), scratch), _existing(args.prop)
        config = replace(SETTINGS, progress=args.progress, memory_gb=args.memory_gb)
        return verify_instance(model, prop, deadline.work_s(), config)
    except Exception as err:  # the competition wants a result file whatever happened
        out_of_memory = isinstance(err, MemoryError) or (
            isinstance(err, RuntimeError) and _OOM.search(str(err)) is not None
        )
        status = "unknown" if out_of_memory else "error"
        message = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
        print(f"gridverify vnnlib: {'out of memory: ' if out_of_memory else ''}{message}", file=sys.stderr)
        from gridverify.vnncomp import InstanceResult

        return InstanceResult(status, deadline.elapsed_s(), detail=message)


_OOM = re.compile(r"out of memory|can't allocate memory|not enough memory|std::bad_alloc", re.IGNORECASE)


def _existing(path: Path) -> Path:
    """``path``, or ``path.gz`` when only the compressed file exists (benchmarks list names without .gz)."""
    gz = path.with_name(path.name + ".gz")
    return gz if not path.exists() and gz.exists() else path


def _plain_onnx(model: Path, scratch: Path) -> Path:
    """The model as a plain ONNX file: a gzip-compressed one is decompressed into ``scratch`` (onnxruntime,
    which re-checks a counterexample, reads only plain files)."""
    with model.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return model
    plain = scratch / model.name.removesuffix(".gz")
    with gzip.open(model, "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst, 2**20)
    return plain


@contextlib.contextmanager
def _address_space_cap(memory_gb: float) -> Iterator[None]:
    """Cap the address space (``RLIMIT_AS``) at what is mapped now plus ``memory_gb`` plus 1 GiB of slack
    (thread stacks, onnxruntime's arenas); an allocation beyond fails with MemoryError (numpy) or
    RuntimeError (torch) instead of the machine swapping or the kernel killing the process. Measured on
    ml4acopf: the mapped size peaks at 0.8 GiB (118-bus) and 3.5 GiB (300-bus prop3) with the default
    budget, and torch runs under the cap; with ``--memory-gb 0.5`` the 300-bus prop3 hits it after 6 s and
    answers ``unknown``. No cap where the mapped size cannot be read. The previous soft limit is restored
    on leaving."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        mapped = _mapped_bytes()
        if mapped == 0:
            raise OSError("the mapped size is unknown")
        cap = mapped + int((memory_gb + 1) * 2**30)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, soft)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):
        yield  # no cap where the platform has none; the search still sizes itself by memory_gb
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mapped_bytes() -> int:
    """This process's mapped address space now (VmSize), 0 where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _no_bars_off_terminal(args: argparse.Namespace) -> None:
    """Progress bars only on a terminal: written to a log file, every redraw would be a line."""
    if sys.stderr.isatty():
        return
    if args.command == "verify":
        args.quiet = True
    elif args.command == "study":
        args.no_progress = True


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. With ``argv`` None (the command itself), ``gridverify vnnlib --timeout`` counts
    from process start and the watchdog ends the process at the deadline; with ``argv`` given (a caller in
    a process that may have run long before, and is not ours to end), from this call, and the watchdog
    only writes ``timeout``."""
    own_process = argv is None
    started = process_start() if own_process else time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(_command(argv)).parse_args(argv)
    if args.threads < 1:
        print("gridverify: --threads must be >= 1", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    _no_bars_off_terminal(args)
    return COMMANDS[args.command].run(args, Invocation(started, own_process))


def _study(args: argparse.Namespace, _: Invocation) -> int:
    from gridverify.study.cli import study_command

    return study_command(args)


def _demo(args: argparse.Namespace, _: Invocation) -> int:
    if not (math.isfinite(args.radius) and args.radius >= 0):
        print(f"gridverify demo: --radius must be finite and >= 0, got {args.radius}", file=sys.stderr)
        return 2
    from gridverify import demo

    rows = demo.run_demo(args.radius)
    print("active power flow p_from (pu) over the load box, certified bounds vs samples:")
    print(demo.format_rows(rows))
    certified = rows[:3]
    sampled = rows[3]
    sound = all(r.lower <= sampled.lower and r.upper >= sampled.upper for r in certified)
    print("every certified bound contains the sampled range:", "yes" if sound else "NO")
    return 0 if sound else 1


# The subcommands, in the order `gridverify --help` lists them.
COMMANDS: dict[str, Command] = {
    "demo": Command(_add_demo, _demo, light=True),
    "verify": Command(_add_verify, _verify),
    "report": Command(_add_report, _report),
    "train": Command(_add_train, _run_train, stub=TRAIN_HELP_LINE),
    "study": Command(_add_study, _study, stub=STUDY_HELP),
    "vnnlib": Command(_add_vnnlib, _vnnlib, light=True),
}


if __name__ == "__main__":
    raise SystemExit(main())
