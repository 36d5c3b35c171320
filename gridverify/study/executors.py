"""Where jobs run: local processes (the default, nothing to start) or a Dask distributed cluster.

Both are `concurrent.futures` executors, so the runner submits and collects jobs the same way for both.
An `ExecutorPool` holds one and says which exceptions mean "the worker was lost" (the job is sound and can
be re-run elsewhere) rather than "the job raised":

- local: `LocalProcesses`, ``workers`` single-process pools (forked from a forkserver, each exiting
  when the study's process dies, so a killed study leaves no orphans). A process that dies fails its own
  job with `BrokenProcessPool` and is replaced; the other jobs run on.
- Dask: a `distributed.Client` on the scheduler's address and its `get_executor()`. The scheduler itself
  re-runs the task of a lost worker on another one, up to its ``allowed-failures`` setting; past that the
  job fails with `KilledWorker`, and the runner submits it again.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, CancelledError, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from gridverify.deadline import process_alive

__all__ = ["ExecutorPool", "LocalProcesses", "dask_pool", "local_pool"]


@dataclass(frozen=True)
class ExecutorPool:
    """An executor, the exceptions that mean its worker was lost, and how to close what it holds."""

    executor: Executor
    lost: tuple[type[BaseException], ...]
    close: Callable[[], None] = lambda: None
    description: str = ""

    def shutdown(self) -> None:
        """Cancel what has not started; wait for what runs (local) or cancel it (Dask); close the client."""
        if isinstance(self.executor, LocalProcesses):
            self.executor.shutdown(wait=True, cancel_futures=True)
        else:  # Dask's ClientExecutor: wait=False cancels its tasks
            self.executor.shutdown(wait=False)
        self.close()

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# -- local processes ----------------------------------------------------------------------------------


class LocalProcesses(Executor):
    """``workers`` single-process pools, one job each at a time: a process that dies loses only its own
    job (`BrokenProcessPool` on that job's future) and is replaced by a fresh one for the next job.

    Processes come from a forkserver (a clean process that imported the verifier once; nothing of the
    study's process state is shared) and exit when the study's process dies, so a killed study leaves no
    orphans. (`run_verify_job` sets one torch thread.)
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._idle = [_single_process() for _ in range(workers)]
        self._busy: set[ProcessPoolExecutor] = set()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        outer: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.append((outer, functools.partial(fn, **kwargs), args))
            self._dispatch()
        return outer

    def _dispatch(self) -> None:
        """Start queued jobs on idle processes (called with the lock held)."""
        while self._queue and self._idle and not self._closed:
            outer, fn, args = self._queue.popleft()
            if not outer.set_running_or_notify_cancel():
                continue
            pool = self._idle.pop()
            try:
                inner = pool.submit(fn, *args)
            except BrokenExecutor as err:  # its process died while idle
                self._idle.append(_single_process())
                outer.set_exception(err)
                continue
            self._busy.add(pool)
            inner.add_done_callback(functools.partial(self._finished, pool, outer))

    def _finished(self, pool: ProcessPoolExecutor, outer: Future, inner: Future) -> None:
        with self._lock:
            self._busy.discard(pool)
            if getattr(pool, "_broken", False) and not self._closed:
                pool.shutdown(wait=False)
                pool = _single_process()
            self._idle.append(pool)
            self._dispatch()
        if inner.cancelled():
            outer.set_exception(CancelledError("the executor was shut down"))
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop: jobs not yet started are cancelled (whatever ``cancel_futures`` says); running ones finish
        when ``wait``."""
        with self._lock:
            self._closed = True
            for outer, _, _ in self._queue:
                outer.cancel()
            self._queue.clear()
            pools = [*self._idle, *self._busy]
        for pool in pools:  # each holds at most the one job it runs
            pool.shutdown(wait=wait)


PRELOAD = ("gridverify.study.jobs", "gridverify.verify", "gridverify.surrogate")


def _single_process() -> ProcessPoolExecutor:
    """A one-process pool forked from the forkserver, which imports the verifier once (`PRELOAD`): a
    worker then starts in milliseconds instead of importing torch, sympy and pandapower itself."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),))


def local_pool(workers: int) -> ExecutorPool:
    """``workers`` local processes (`LocalProcesses`)."""
    return ExecutorPool(
        LocalProcesses(workers), (BrokenExecutor,), description=f"{workers} local process(es)"
    )


def _init_worker(study_pid: int) -> None:
    """Exit when the study's process is gone (a SIGKILLed study leaves no orphans)."""
    threading.Thread(target=_exit_without, args=(study_pid,), daemon=True).start()


def _exit_without(study_pid: int, poll_s: float = 0.5) -> None:
    while process_alive(study_pid):
        time.sleep(poll_s)
    os._exit(1)


# -- Dask distributed ---------------------------------------------------------------------------------


def dask_pool(address: str, connect_timeout_s: float = 30.0) -> ExecutorPool:
    """A client of the Dask scheduler at ``address`` (``tcp://host:port``) and its executor.

    Each submission is a distinct task (``pure=False``): re-submitting a lost job runs it again.
    """
    from distributed import Client, KilledWorker

    client = Client(address, timeout=connect_timeout_s, set_as_default=False)
    executor: Any = client.get_executor(pure=False)
    n = len(client.scheduler_info().get("workers", {}))
    return ExecutorPool(
        executor,
        (KilledWorker,),
        close=client.close,
        description=f"Dask scheduler {address} ({n} worker(s) now)",
    )
