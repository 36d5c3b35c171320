"""Where jobs run: local processes (the default, nothing to start) or a Dask distributed cluster.

Both are `concurrent.futures.Executor`\\ s, so the runner submits and collects jobs the same way for both.
An `ExecutorPool` hands out an executor for each round of submissions and says which exceptions mean "the
worker was lost" (the job is sound and can be re-run elsewhere) rather than "the job raised":

- local: a `ProcessPoolExecutor` of ``workers`` processes (spawned, one torch thread each, each exiting
  when the study's process dies, so a killed study leaves no orphans). A worker that dies breaks the whole
  pool (`BrokenProcessPool` for every job in flight); the next round gets a fresh pool.
- Dask: a `distributed.Client` on the scheduler's address and its `get_executor()`. The scheduler itself
  re-runs the task of a lost worker on another one, up to its ``allowed-failures`` setting; past that the
  job fails with `KilledWorker`, and the runner submits it again (a later round, same client).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecutorPool", "dask_pool", "local_pool"]


@dataclass
class ExecutorPool:
    """Gives an executor per round (`executor`), knows the lost-worker exceptions, closes all at the end."""

    open_executor: Callable[[], Executor]
    lost: tuple[type[BaseException], ...]
    close: Callable[[], None] = lambda: None
    description: str = ""
    _current: Executor | None = field(default=None, init=False)

    def executor(self) -> Executor:
        """The current executor, or a new one where the last one broke (a local pool after a lost worker)."""
        if self._current is None or _is_broken(self._current):
            if self._current is not None:
                _stop(self._current, wait=False)
            self._current = self.open_executor()
        return self._current

    def shutdown(self) -> None:
        """Cancel what has not started, wait for what runs (local) or cancel it (Dask), close the client."""
        if self._current is not None:
            _stop(self._current, wait=True)
            self._current = None
        self.close()

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _is_broken(executor: Executor) -> bool:
    return bool(getattr(executor, "_broken", False))


def _stop(executor: Executor, wait: bool) -> None:
    if isinstance(executor, ProcessPoolExecutor):
        executor.shutdown(wait=wait, cancel_futures=True)
    else:  # Dask's ClientExecutor: wait=False cancels its tasks
        executor.shutdown(wait=False)


# -- local processes ----------------------------------------------------------------------------------


def local_pool(workers: int) -> ExecutorPool:
    """``workers`` local processes (spawned, so nothing of the study's process state is shared)."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    context = multiprocessing.get_context("spawn")

    def open_executor() -> Executor:
        parent = (os.getpid(),)
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=parent)

    return ExecutorPool(open_executor, (BrokenExecutor,), description=f"{workers} local process(es)")


def _init_worker(parent_pid: int) -> None:
    """One torch thread; exit when the study's process is gone (a SIGKILLed study leaves no orphans)."""
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    while os.getppid() == parent_pid:
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
        lambda: executor,
        (KilledWorker,),
        close=client.close,
        description=f"Dask scheduler {address} ({n} worker(s) now)",
    )
