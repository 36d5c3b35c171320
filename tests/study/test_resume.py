"""A study killed with SIGKILL and run again: no finished job lost or recomputed, the final set complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gridverify.study import JobStore, load_study
from tests.study.conftest import REPO, child_env


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def _certificates(out: Path) -> dict[str, tuple[int, bytes]]:
    return {p.stem: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "certificates").glob("*.json")}


def test_a_study_killed_with_sigkill_resumes_without_recomputing(tmp_path, small_study):
    jobs = load_study(small_study)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gridverify.study", str(small_study), "--out", str(out), "--no-progress"]
    run = dict(cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study = subprocess.Popen(command, start_new_session=True, **run)
    try:
        _wait_for(lambda: bool(_certificates(out)), 120, "a finished job")
        study.send_signal(signal.SIGKILL)
        study.wait(10)
        before = _certificates(out)
        assert 1 <= len(before) < len(jobs), "the kill should land in the middle of the study"
        worker = JobStore(out).run_record(next(iter(before)))["pid"]
        _wait_for(lambda: not _alive(worker), 15, "the orphaned worker process to exit")
    finally:
        if _alive(study.pid):
            os.killpg(study.pid, signal.SIGKILL)
    assert subprocess.run(command, timeout=300, **run).returncode == 0
    after = _certificates(out)
    assert set(after) == {j.id for j in jobs}
    assert {k: after[k] for k in before} == before  # finished jobs untouched
    events = JobStore(out).events()
    last_start = max(i for i, e in enumerate(events) if e["event"] == "start")
    resubmitted = {e["job"] for e in events[last_start:] if e["event"] == "submitted"}
    assert resubmitted == set(after) - set(before)  # only the unfinished jobs ran again
    assert (out / "report" / "summary.md").read_text().count("| case14 |") == len(jobs)
