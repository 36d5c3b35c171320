"""Deadlines on one clock (``time.monotonic``), a command's counted from process start, and the one writer
of a command's result file.

`Deadline` is the one value timed work takes: the command's (`Watchdog`); `verify`'s, `maximise`'s and
`verify_instance`'s, turned once from the duration the user gives; each stage's, cut from its caller's
(`Deadline.until`). Durations remain as budgets of work that splits them into fixed shares (a tightening
round, the LP tightening, `verify`'s chunks, the root's alpha steps), each share then its own deadline.

Process start: the kernel's start time of this process (``/proc/self/stat`` field 22, clock ticks since
boot) against ``CLOCK_BOOTTIME`` now, so interpreter start-up, imports (torch: about 1.5 s) and, when a shell
script ``exec``s the command, the shell's own start all count. Without ``/proc`` the clock starts when this
module is imported. Times are then kept on ``time.monotonic``.

`ResultFile` writes atomically (a temporary file in the same folder, then ``os.replace``): a reader sees
the old text or the new, never half of one. Its first *final* write wins; later ones are refused, so the
watchdog never overwrites an answer and the answer never overwrites the watchdog's ``timeout``.

`Watchdog` is a daemon thread that, a margin before the deadline, writes ``timeout`` as the final answer,
prints it and ends the process with ``os._exit`` whatever the main thread is doing. A thread needs the GIL;
a C call that holds it past the deadline would hold the watchdog too, so `faulthandler` (a C thread of its
own) ends the process at the deadline itself, printing every thread's stack to stderr; the result file then
holds the provisional ``timeout`` written when the watchdog started.
"""

from __future__ import annotations

import faulthandler
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deadline", "ResultFile", "Watchdog", "process_alive", "process_start", "unwritable"]

_IMPORTED = time.monotonic()


def process_start() -> float:
    """``time.monotonic()`` at this process's start (see the module docstring)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22; the name in field 2 may hold spaces
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return time.monotonic() - max(age_s, 0.0)


@dataclass(frozen=True)
class Deadline:
    """``timeout_s`` wall seconds from ``start`` (a ``time.monotonic()`` instant). ``end`` is when the work
    must stop; ``start`` is where its reported times count from, and ``timeout_s`` what its stages' shares
    are shares of."""

    start: float
    timeout_s: float

    @staticmethod
    def after(timeout_s: float) -> Deadline:
        """``timeout_s`` seconds from now: where a user-facing duration becomes a deadline."""
        return Deadline(time.monotonic(), timeout_s)

    def until(self, end: float) -> Deadline:
        """The same start, ending at ``end`` (a ``time.monotonic()`` instant) or at this deadline's end,
        whichever comes first: a stage's share of the time."""
        return Deadline(self.start, min(end, self.end) - self.start)

    def restarted(self) -> Deadline:
        """The same end counted from now (0 s once it has passed): for work that splits its own time from
        the moment it begins."""
        return Deadline.after(self.remaining_s())

    def remaining_s(self) -> float:
        """Seconds until ``end``, at least 0."""
        return max(self.end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    @property
    def margin_s(self) -> float:
        """What the watchdog keeps in hand to write and exit: 5 % of the timeout, at most 1 s."""
        return min(1.0, 0.05 * self.timeout_s)

    @property
    def end(self) -> float:
        return self.start + self.timeout_s

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def left_s(self) -> float:
        """Seconds until the watchdog fires (the deadline less the margin), at least 0."""
        return max(self.end - self.margin_s - time.monotonic(), 0.0)

    def work_s(self) -> float:
        """Seconds the work may take: until the watchdog fires, less 10 % of the timeout (at most 2 s) for
        finishing up (the search overshooting its budget, confirming a witness, writing the file), at
        least 0."""
        return max(self.left_s() - min(2.0, 0.1 * self.timeout_s), 0.0)


def unwritable(path: Path) -> str | None:
    """Why a result file cannot be written at ``path`` (None if it can): the reason names the path. Probes
    the folder by creating and removing a temporary file, which is how `ResultFile` writes."""
    if path.is_dir():
        return f"{path} is a directory"
    folder = path.parent
    if not folder.is_dir():
        return f"{path}: folder {folder} does not exist"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as err:
        return f"{path}: cannot write in {folder} ({err.strerror or err})"
    return None


class ResultFile:
    """The result file (or nothing when ``path`` is None); thread-safe, first final write wins."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._final = False

    def provisional(self, text: str) -> None:
        """Write ``text`` unless a final answer is already there; later writes may replace it."""
        with self._lock:
            if not self._final:
                self._write(text)

    def finish(self, text: str) -> bool:
        """Write ``text`` as the final answer; False (nothing written) if one was written before."""
        with self._lock:
            if self._final:
                return False
            self._write(text)
            self._final = True
            return True

    def _write(self, text: str) -> None:
        if self.path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Watchdog:
    """Ends the process at ``deadline`` with ``text`` as its answer (see the module docstring).

    Use as a context manager around the work: entering writes ``text`` provisionally and starts the
    thread; leaving stops both timers (the process lives on, e.g. under a test). ``before_exit`` runs just
    before ``os._exit`` (removing temporary files). With ``own_process`` False (a caller inside a process
    that is not ours to end, such as a test runner) the watchdog only writes its answer, the main thread
    runs on, and its own answer is refused."""

    def __init__(
        self,
        deadline: Deadline,
        result: ResultFile,
        text: str = "timeout\n",
        before_exit: Callable[[], None] | None = None,
        own_process: bool = True,
    ) -> None:
        self.deadline, self.result, self.text = deadline, result, text
        self.before_exit, self.own_process = before_exit, own_process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridverify-watchdog", daemon=True)
        self._hard_stop = False  # whether faulthandler's timer is ours to cancel

    def __enter__(self) -> Watchdog:
        self.result.provisional(self.text)
        self._thread.start()
        hard_s = self.deadline.end - time.monotonic()
        stderr = sys.__stderr__
        if self.own_process and math.isfinite(hard_s) and stderr is not None:
            faulthandler.dump_traceback_later(max(hard_s, 0.01), exit=True, file=stderr)
            self._hard_stop = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._hard_stop:
            faulthandler.cancel_dump_traceback_later()

    def _run(self) -> None:
        if self._stop.wait(self.deadline.left_s()) or not self.result.finish(self.text):
            return
        if not self.own_process:
            return
        try:
            print(f"{self.text.strip()} (watchdog: {self.deadline.elapsed_s():.2f} s since process start)")
            sys.stdout.flush()
            if self.before_exit is not None:
                self.before_exit()
        finally:
            os._exit(0)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): existence is all we know
        return True
