"""`gridverify vnnlib` as a process: bad arguments refused before any work, compressed inputs, an answer
within --timeout whatever the work is doing (`gridverify.deadline`), and the VNN-COMP scripts stopping
only their own process."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gridverify import vnncomp
from gridverify.cli import main
from gridverify.deadline import Deadline, ResultFile
from gridverify.ir import from_onnx
from tests.test_vnncomp import _model, _spec

ROOT = Path(__file__).resolve().parents[1]
UNSAT = 2.0  # above the maximum on the box (sin(1) + 0.5 = 1.34) by enough for CROWN alone


def _gzip(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return gz


def _python(code: str, timeout_s: float, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` in a fresh interpreter from the repository root; (the process, its wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return proc, time.perf_counter() - start


@pytest.mark.parametrize("where", ["missing folder", "directory"])
def test_unwritable_out_exits_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    out = tmp_path / "no_such_folder" / "result.txt" if where == "missing folder" else tmp_path
    missing_model = tmp_path / "never_read.onnx"  # reading it would be an `error` result and exit 1
    start = time.perf_counter()
    code = main(["vnnlib", str(missing_model), str(tmp_path / "p.vnnlib"), "--out", str(out)])
    assert code == 2 and time.perf_counter() - start < 1.0
    message = capsys.readouterr().err
    assert str(out) in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "no_such_folder").exists()


def test_read_only_location_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder without write permission, or /proc where even root cannot create a file."""
    folder = tmp_path if os.geteuid() != 0 else Path("/proc")
    if not folder.is_dir():
        pytest.skip("no read-only folder to try")
    mode = tmp_path.stat().st_mode
    tmp_path.chmod(0o555)
    try:
        assert main(["vnnlib", "m.onnx", "p.vnnlib", "--out", str(folder / "r.txt")]) == 2
    finally:
        tmp_path.chmod(mode)
    assert str(folder / "r.txt") in capsys.readouterr().err


BAD_BUDGETS = [("--timeout", "inf"), ("--timeout", "nan"), ("--timeout", "-1"), ("--timeout", "0")]
BAD_BUDGETS += [("--memory-gb", "0"), ("--memory-gb", "inf")]


@pytest.mark.parametrize("flag", BAD_BUDGETS)
def test_bad_budget_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: tuple[str, str]
) -> None:
    out = tmp_path / "r.txt"
    assert main(["vnnlib", "m.onnx", "p.vnnlib", *flag, "--out", str(out)]) == 2
    assert flag[0] in capsys.readouterr().err and not out.exists()


def test_gzip_inputs_give_the_same_answer(tmp_path: Path) -> None:
    """A false property: the witness is checked in onnxruntime, which reads the decompressed model."""
    answers = []
    for name, compress in (("plain", False), ("gz", True)):
        folder = tmp_path / name
        folder.mkdir()
        model, prop = _model(folder), _spec(folder, 1.2)
        if compress:
            model, prop = _gzip(model), _gzip(prop)
        out = folder / "result.txt"
        assert main(["vnnlib", str(model), str(prop), "--timeout", "20", "--out", str(out)]) == 0
        answers.append(out.read_text())
    assert answers[0].splitlines()[0] == answers[1].splitlines()[0] == "sat"


def test_names_without_gz_find_the_compressed_files(tmp_path: Path) -> None:
    """instances.csv of the compressed benchmarks names ``x.onnx`` for ``x.onnx.gz``."""
    model, prop = _gzip(_model(tmp_path)), _gzip(_spec(tmp_path, 1.2))
    out = tmp_path / "result.txt"
    args = [str(model.with_suffix("")), str(prop.with_suffix("")), "--out", str(out)]
    assert main(["vnnlib", *args]) == 0 and out.read_text().startswith("sat\n")


def test_out_of_memory_writes_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(*args: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(vnncomp, "verify_instance", exhausted)
    out = tmp_path / "result.txt"
    assert main(["vnnlib", str(_model(tmp_path)), str(_spec(tmp_path, UNSAT)), "--out", str(out)]) == 0
    assert out.read_text() == "unknown\n"


def test_a_final_answer_is_never_overwritten(tmp_path: Path) -> None:
    result = ResultFile(tmp_path / "r.txt")
    result.provisional("timeout\n")
    assert result.finish("unsat\n") and not result.finish("timeout\n")
    result.provisional("timeout\n")
    assert (tmp_path / "r.txt").read_text() == "unsat\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]  # no temporary file left behind


def test_deadline_budgets() -> None:
    d = Deadline(time.monotonic() - 2.0, 10.0)
    assert d.margin_s == pytest.approx(0.5)
    assert d.left_s() == pytest.approx(7.5, abs=0.05) and d.work_s() == pytest.approx(6.5, abs=0.05)
    assert Deadline(time.monotonic() - 20.0, 10.0).work_s() == 0.0


SLOW_MAIN = """
import sys, time
from gridverify import cli, vnncomp
vnncomp.verify_instance = lambda *args: time.sleep(60)
sys.argv = ["gridverify", *sys.argv[1:]]
raise SystemExit(cli.main())
"""


def test_watchdog_answers_timeout_when_the_work_is_slow(tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    args = ["vnnlib", str(_model(tmp_path)), str(_spec(tmp_path, UNSAT)), "--timeout", "4", "--out", str(out)]
    proc, wall_s = _python(SLOW_MAIN, 30, *args)
    assert proc.returncode == 0 and out.read_text() == "timeout\n", proc.stderr
    assert proc.stdout.startswith("timeout") and wall_s < 4.5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


GIL_HOLDER = """
import sys, time
from pathlib import Path
from gridverify.deadline import Deadline, ResultFile, Watchdog, process_start
with Watchdog(Deadline(process_start(), float(sys.argv[2])), ResultFile(Path(sys.argv[1]))):
    {work}
"""


@pytest.mark.parametrize(
    ("work", "code"),
    [("time.sleep(60)", 0), ("sum(range(10**11))", 1)],  # a C loop that never lets go of the GIL
    ids=["sleeping", "holding the GIL"],
)
def test_watchdog_ends_the_process_by_the_deadline(tmp_path: Path, work: str, code: int) -> None:
    """Sleeping, the watchdog thread answers; holding the GIL, faulthandler ends the process at the
    deadline and the provisional answer stands."""
    out = tmp_path / "result.txt"
    proc, wall_s = _python(GIL_HOLDER.format(work=work), 30, str(out), "2")
    assert proc.returncode == code and out.read_text() == "timeout\n"
    assert wall_s < 2.5


def test_run_instance_is_stopped_by_prepare_instance_and_nothing_else(tmp_path: Path) -> None:
    """prepare_instance.sh stops the process run_instance.sh started (by its pid file), not another
    `gridverify vnnlib` of the same user."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gridverify"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    model, prop = _model(tmp_path), _spec(tmp_path, UNSAT)
    scripts = ROOT / "vnncomp"
    ours = subprocess.Popen(
        [scripts / "run_instance.sh", "v1", "c", model, prop, tmp_path / "r.txt", "60"], env=env
    )
    other = subprocess.Popen([sys.executable, fake, "vnnlib", "somebody", "else's"], env=env)
    try:
        pid_file = tmp_path / f"gridverify-vnncomp-{os.getuid()}.pid"
        for _ in range(50):
            if pid_file.exists() and ours.pid in _pids_running_gridverify_vnnlib():
                break
            time.sleep(0.1)
        prepare = [scripts / "prepare_instance.sh", "v1", "c", model, prop]
        subprocess.run(prepare, env=env, check=True, timeout=10)
        assert ours.wait(timeout=5) != 0 and other.poll() is None and not pid_file.exists()
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def _pids_running_gridverify_vnnlib() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"gridverify\0vnnlib\0" in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def test_ml4acopf_118_prop2_answers_within_its_timeout(ml4acopf: Path, tmp_path: Path) -> None:
    """Undecided within 5 s (it needs about 25 s), so the watchdog's answer, by 5 s from process start."""
    if shutil.which("gridverify") is None:
        pytest.skip("the gridverify command is not installed")
    out = tmp_path / "result.txt"
    model, prop = ml4acopf / "onnx" / "118_ieee_ml4acopf.onnx", ml4acopf / "vnnlib" / "118_ieee_prop2.vnnlib"
    start = time.perf_counter()
    subprocess.run(["gridverify", "vnnlib", model, prop, "--timeout", "5", "--out", out], timeout=30)
    wall_s = time.perf_counter() - start
    assert out.read_text().splitlines()[0] in ("unsat", "timeout", "unknown") and wall_s < 6.0


def test_from_onnx_reads_gzip(tmp_path: Path) -> None:
    plain = _model(tmp_path)
    packed = tmp_path / "packed.onnx.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    x = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    ys = [(g := from_onnx(p)).forward(x)[g.outputs[0][0]] for p in (plain, packed)]
    assert torch.equal(ys[0], ys[1])
