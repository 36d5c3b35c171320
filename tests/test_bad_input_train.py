"""`gridverify train` on bad input and on interrupts: a bad case is one line and exit code 2; Ctrl-C or
SIGTERM stops within seconds with one line (exit 130 / 143, no traceback, no BrokenPipeError), the labels
solved so far are kept and the next run resumes after them; an interrupted write never leaves half a
surrogate file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gridverify.cli import main
from gridverify.surrogate import dataset as dataset_module
from gridverify.surrogate import load_case
from gridverify.surrogate.dataset import DatasetConfig, Interrupted, generate
from tests.surrogate.support import tiny_toml

REPO = Path(__file__).resolve().parents[1]
CASE14 = load_case("case14")
TINY = tiny_toml(400, 2)


def _case(folder: Path, toml: str = TINY) -> Path:
    folder.mkdir()
    (folder / CASE14.definition.source).write_bytes(CASE14.source.read_bytes())
    (folder / "case.toml").write_text(toml)
    return folder


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        (TINY.replace('region = "+-5%"', 'region = "+-five%"'), "region '+-five%' not understood"),
        (TINY + "[[oops\n", "not valid TOML"),
        (TINY.replace("hidden = [8]", "hidden = [8]\nwidth = 3"), "unknown training settings ['width']"),
        (TINY.replace('source = "pglib_opf_case14_ieee.m"', 'source = "absent.m"'), "absent.m: no such file"),
    ],
)
def test_a_bad_case_is_one_line_and_exit_2(toml, problem, tmp_path, capsys):
    folder = _case(tmp_path / "case", toml)
    assert main(["train", str(folder), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridverify train: ") and "\n" not in err and "Traceback" not in err, err
    assert problem in err, err
    assert sorted(p.name for p in folder.iterdir()) == sorted(["case.toml", CASE14.definition.source])


def test_an_unknown_case_is_named(capsys):
    assert main(["train", "case9999", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no case 'case9999'" in err and "\n" not in err


def test_interrupted_labels_are_kept_and_resumed(tmp_path, monkeypatch):
    """A fake solver (no AC-OPF: fast) interrupted in the third chunk; the rerun solves only the rest."""
    calls: list[int] = []
    stop_at = [20]

    def fake(solver: object, load: np.ndarray) -> np.ndarray | None:  # stands in for solve_opf
        calls.append(1)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return None if load[0] < 0 else np.r_[load[:5], load[:5], np.ones(14), np.zeros(14), [1.0]]

    monkeypatch.setattr(dataset_module, "solve_opf", fake)
    config = DatasetConfig(samples=40, workers=1, cache_dir=tmp_path, progress=False, chunk=8)
    with pytest.raises(Interrupted) as stopped:
        generate(CASE14.source, CASE14.region, config)
    assert (stopped.value.kept, stopped.value.total) == (16, 40)
    assert stopped.value.partial is not None and stopped.value.partial.exists()
    calls.clear()
    stop_at[0] = 0
    data = generate(CASE14.source, CASE14.region, config)
    assert len(calls) == 40 - 16 and len(data) == 40
    assert np.array_equal(data.load, CASE14.region.sample(40, np.random.default_rng(0)))
    assert [p.name.endswith(".partial.npz") for p in tmp_path.iterdir()] == [False]  # only the full cache


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_signal_stops_training_in_seconds_without_a_traceback(signum, group, tmp_path):
    """SIGTERM to the command, or Ctrl-C (SIGINT to its whole process group) while AC-OPF workers run.
    PYPOWER's runopf labels (about 0.3-1 s each): IPOPT's 400 would be done before the signal comes."""
    folder = _case(tmp_path / "case", TINY.replace("samples = 400", 'samples = 400\nlabeller = "runopf"'))
    run = "from gridverify.cli import main; raise SystemExit(main())"
    command = [sys.executable, "-c", run, "train", str(folder), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    try:
        seen = b""
        deadline = time.monotonic() + 120
        assert child.stderr is not None
        while b"AC-OPF" not in seen and time.monotonic() < deadline:  # the label generation has started
            chunk = os.read(child.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        time.sleep(1.0)
        sent = time.monotonic()
        os.killpg(child.pid, signum) if group else os.kill(child.pid, signum)
        rest = child.communicate(timeout=30)[1]
        stopped_s = time.monotonic() - sent
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    err = (seen + rest).decode(errors="replace")
    assert child.returncode == 128 + signum, err
    assert stopped_s < 10, stopped_s
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("gridverify train: interrupted"), last
    assert not (folder / "surrogate.pt").exists()
