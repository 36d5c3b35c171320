"""Training data: load vectors drawn uniformly from a `Region`, each solved by an AC-OPF labeller in worker
processes, cached on disk.

Two labellers (``DatasetConfig.labeller``):

- ``"ipopt"`` (default): the polar AC-OPF of the case's `GridData` solved by IPOPT with exact derivatives
  (`gridverify.grid.opf`), each load warm-started from the nearest load its worker has solved; works for
  MATPOWER ``.m`` and pandapower ``.json`` grids;
- ``"runopf"``: PYPOWER's AC-OPF (``runopf``, which reproduces PGLib's reference costs) on the MATPOWER
  arrays, the bus demands (``PD``, ``QD`` of the bus rows that hold the case's loads, in MW / MVAr)
  replaced; the cross-check, and what the first shipped cases were trained on.

The solution is read back in `GridData` order (generators, buses; angles in rad). Samples where the
labeller does not converge are dropped and counted (``Dataset.failed``). The cache key is a hash of the case
file's bytes, the region, the generation settings and the labeller, so a changed case or region regenerates.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matpowercaseframes import CaseFrames
from pypower.api import ppoption, runopf
from pypower.idx_bus import BUS_I, PD, QD, VA, VM
from pypower.idx_gen import PG, QG
from tqdm import tqdm

from gridverify.grid.data import GridData
from gridverify.grid.net import read_grid
from gridverify.grid.opf import AcOpf, Labeller, OpfConfig
from gridverify.specs.region import Region

__all__ = ["LABELLERS", "Dataset", "DatasetConfig", "Interrupted", "generate", "solve_opf"]

LABELLERS = ("ipopt", "runopf")

# also the default of `gridverify train --cache-dir` (gridverify.cli)
DEFAULT_CACHE = Path.home() / ".cache" / "gridverify" / "datasets"


@dataclass(frozen=True)
class DatasetConfig:
    """How many samples, drawn with which seed, solved by which labeller (`LABELLERS`) in how many
    processes; ``cache_dir`` None: no cache."""

    samples: int = 1000
    seed: int = 0
    workers: int = 2
    cache_dir: Path | None = DEFAULT_CACHE
    progress: bool = True
    chunk: int = 8  # samples per task sent to a worker
    labeller: str = "ipopt"

    def __post_init__(self) -> None:
        if self.labeller not in LABELLERS:
            raise ValueError(f"unknown AC-OPF labeller {self.labeller!r}; known: {', '.join(LABELLERS)}")
        if self.samples < 1 or self.workers < 1 or self.chunk < 1:
            raise ValueError("samples, workers and chunk must be >= 1")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Solved samples: ``load`` (S, 2D) and the OPF's ``pg_pu``, ``qg_pu`` (S, G), ``vm_pu``, ``va_rad``
    (S, N), ``cost`` (S,) per hour; ``failed`` counts the samples dropped for non-convergence."""

    load: np.ndarray
    pg_pu: np.ndarray
    qg_pu: np.ndarray
    vm_pu: np.ndarray
    va_rad: np.ndarray
    cost: np.ndarray
    failed: int
    seconds: float = field(default=0.0)

    def __len__(self) -> int:
        return int(self.load.shape[0])

    def target(self, names: tuple[str, ...]) -> np.ndarray:
        """The named columns side by side, (S, K)."""
        return np.concatenate([getattr(self, n) for n in names], axis=1)

    def subset(self, rows: np.ndarray) -> Dataset:
        cols = ("load", "pg_pu", "qg_pu", "vm_pu", "va_rad", "cost")
        return Dataset(**{c: getattr(self, c)[rows] for c in cols}, failed=self.failed, seconds=self.seconds)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {c: getattr(self, c) for c in ("load", "pg_pu", "qg_pu", "vm_pu", "va_rad", "cost")}
        np.savez(path, **arrays, failed=self.failed, seconds=self.seconds)

    @classmethod
    def read(cls, path: Path) -> Dataset:
        with np.load(path) as z:
            cols = {c: z[c] for c in ("load", "pg_pu", "qg_pu", "vm_pu", "va_rad", "cost")}
            return cls(**cols, failed=int(z["failed"]), seconds=float(z["seconds"]))


# -- one sample ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Solver:
    """PYPOWER's labeller: the case's MATPOWER arrays and where its loads and elements sit in them."""

    ppc: dict[str, Any]
    load_rows: np.ndarray  # (D,) bus rows of the loads
    bus_rows: np.ndarray  # (N,) bus rows of GridData's buses
    gen_rows: np.ndarray  # (G,) gen rows of GridData's generators

    @classmethod
    def of(cls, path: Path, data: GridData) -> _Solver:
        if Path(path).suffix.lower() != ".m":
            raise ValueError(f"{path}: the runopf labeller reads MATPOWER .m files only (use ipopt)")
        mpc = CaseFrames(str(path)).to_mpc()
        keys = ("bus", "gen", "branch", "gencost")
        ppc = {k: np.array(v, dtype=np.float64) if k in keys else v for k, v in mpc.items()}
        row = {int(b): i for i, b in enumerate(ppc["bus"][:, BUS_I])}
        bus_rows = np.array([row[int(b)] for b in data.ids.bus], dtype=np.int64)
        return cls(ppc, bus_rows[data.loads.bus], bus_rows, data.ids.gen - 1)

    def label(self, load: np.ndarray) -> np.ndarray | None:
        """PYPOWER's AC-OPF at ``load`` (2D,) pu: ``concat(pg, qg, vm, va, [cost])`` or None."""
        ppc = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.ppc.items()}
        base, d = float(ppc["baseMVA"]), load.size // 2
        ppc["bus"][self.load_rows, PD] = load[:d] * base
        ppc["bus"][self.load_rows, QD] = load[d:] * base
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PYPOWER's numpy deprecations, divide warnings on bad iterates
            result = runopf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
        if not result["success"]:
            return None
        bus, gen = result["bus"][self.bus_rows], result["gen"][self.gen_rows]
        parts = (gen[:, PG] / base, gen[:, QG] / base, bus[:, VM], np.deg2rad(bus[:, VA]), [result["f"]])
        return np.concatenate(parts)


class _Ipopt:
    """IPOPT's labeller (`gridverify.grid.opf`). The NLP is compiled on first use in the process that
    solves (it is not pickled), and that process's `Labeller` warm-starts from its own solved loads."""

    def __init__(self, data: GridData, config: OpfConfig | None = None) -> None:
        self.data, self.config = data, config or OpfConfig()
        self._labeller: Labeller | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data, "config": self.config, "_labeller": None}

    def label(self, load: np.ndarray) -> np.ndarray | None:
        if self._labeller is None:
            self._labeller = Labeller(AcOpf(self.data, self.config))
        solution = self._labeller.solve(load)
        return solution.label() if solution.converged else None


def _labeller(path: Path, data: GridData, name: str) -> _Solver | _Ipopt:
    return _Solver.of(path, data) if name == "runopf" else _Ipopt(data)


def solve_opf(solver: _Solver | _Ipopt, load: np.ndarray) -> np.ndarray | None:
    """One label ``concat(pg, qg, vm, va, [cost])`` at ``load`` (2D,) pu, or None if not converged."""
    return solver.label(load)


_WORKER: list[_Solver | _Ipopt] = []  # the labeller of a pool's worker process (set by `_start_worker`)


def _start_worker(solver: _Solver | _Ipopt) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER[:] = [solver]


def _solve_chunk(loads: np.ndarray) -> list[np.ndarray | None]:
    return [solve_opf(_WORKER[0], x) for x in loads]


# -- many samples --------------------------------------------------------------------------------------
def generate(path: Path, region: Region, config: DatasetConfig = DatasetConfig()) -> Dataset:
    """``config.samples`` loads drawn uniformly in ``region``, solved (cached when ``cache_dir`` is set).

    With a cache, solved labels are also kept in ``<key>.partial.npz`` as they come (at most every
    `SAVE_EVERY_S` seconds, and when the run is interrupted: Ctrl-C, or SIGTERM turned into
    ``KeyboardInterrupt`` by the caller), and a later call with the same key resumes after them."""
    cache = None if config.cache_dir is None else config.cache_dir / f"{_key(path, region, config)}.npz"
    if cache is not None and cache.exists():
        return Dataset.read(cache)
    data = read_grid(path)
    loads = region.sample(config.samples, np.random.default_rng(config.seed))
    partial = None if cache is None else cache.with_name(cache.stem + ".partial.npz")
    dataset = _solve_all(_labeller(path, data, config.labeller), loads, data, config, partial)
    if cache is not None:
        dataset.save(cache)
    if partial is not None:
        partial.unlink(missing_ok=True)
    return dataset


SAVE_EVERY_S = 10.0  # how often labels in progress are written to the partial file


class Interrupted(KeyboardInterrupt):
    """Label generation stopped by an interrupt: ``kept`` labels are saved in ``partial`` (None: nowhere)."""

    def __init__(self, kept: int, total: int, partial: Path | None) -> None:
        super().__init__(f"{kept} of {total} labels kept")
        self.kept, self.total, self.partial = kept, total, partial


def _solve_all(
    solver: _Solver | _Ipopt,
    loads: np.ndarray,
    data: GridData,
    config: DatasetConfig,
    partial: Path | None = None,
) -> Dataset:
    start = time.monotonic()
    results, seconds = _resume(partial, loads)
    todo = loads[len(results) :]
    chunks = [todo[i : i + config.chunk] for i in range(0, len(todo), config.chunk)]
    bar = tqdm(total=len(loads), initial=len(results), desc=f"AC-OPF {data.name}", unit="opf",
               disable=not config.progress)  # fmt: skip
    saved_at = time.monotonic()
    try:
        with contextlib.closing(_solved_chunks(solver, chunks, config.workers)) as each:
            for solved in each:
                results += solved
                bar.update(len(solved))
                bar.set_postfix(failed=sum(r is None for r in results), refresh=False)
                if partial is not None and time.monotonic() - saved_at > SAVE_EVERY_S:
                    _save_partial(partial, loads, results, seconds + time.monotonic() - start)
                    saved_at = time.monotonic()
    except KeyboardInterrupt:
        bar.close()
        if partial is not None:
            _save_partial(partial, loads, results, seconds + time.monotonic() - start)
        raise Interrupted(len(results), len(loads), partial) from None
    bar.close()
    dataset = _assemble(loads, results, data, seconds + time.monotonic() - start)
    if config.progress:
        print(_summary(data.name, config, dataset), file=sys.stderr)
    return dataset


def _summary(name: str, config: DatasetConfig, ds: Dataset) -> str:
    """One line: how many labels, how many failed, how long (wall seconds, all workers together)."""
    total = len(ds) + ds.failed
    share = 100 * ds.failed / max(total, 1)
    return (
        f"AC-OPF {name} ({config.labeller}, {config.workers} workers): {total} loads, {ds.failed} "
        f"failed ({share:.2g}%), {ds.seconds:.1f} s ({ds.seconds / max(total, 1):.3g} s per load)"
    )


def _solved_chunks(
    solver: _Solver | _Ipopt, chunks: list[np.ndarray], workers: int
) -> Iterator[list[np.ndarray | None]]:
    """Each chunk's solutions in order; worker processes (each given the labeller once, at its start)
    ignore SIGINT and die at once on SIGTERM, so an interrupt reaches only this process, which ends the
    pool."""
    if workers <= 1:
        for chunk in chunks:
            yield [solve_opf(solver, x) for x in chunk]
        return
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker, initargs=(solver,))
    try:
        yield from pool.imap(_solve_chunk, chunks)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _resume(partial: Path | None, loads: np.ndarray) -> tuple[list[np.ndarray | None], float]:
    """The labels a previous interrupted run kept for these same ``loads`` (rows of NaN: not converged)."""
    if partial is None or not partial.exists():
        return [], 0.0
    try:
        with np.load(partial) as z:
            if not np.array_equal(z["loads"], loads):
                return [], 0.0
            rows, seconds = z["solved"], float(z["seconds"])
    except (OSError, ValueError, KeyError):  # a damaged partial file: start again
        return [], 0.0
    return [None if np.isnan(r).all() else r for r in rows], seconds


def _save_partial(partial: Path, loads: np.ndarray, results: list[np.ndarray | None], seconds: float) -> None:
    """Write the labels so far atomically (a temporary file, then `os.replace`)."""
    if not results:
        return
    width = next((len(r) for r in results if r is not None), 1)
    rows = np.array([np.full(width, np.nan) if r is None else r for r in results]).reshape(
        len(results), width
    )
    partial.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial.with_name(f".{partial.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, loads=loads, solved=rows, seconds=seconds)
    os.replace(tmp, partial)


def _assemble(loads: np.ndarray, results: list[np.ndarray | None], data: GridData, seconds: float) -> Dataset:
    ok = [i for i, r in enumerate(results) if r is not None]
    g, n = len(data.gens.bus), len(data.buses.vmin_pu)
    y = np.array([results[i] for i in ok]).reshape(len(ok), 2 * g + 2 * n + 1)
    cuts = np.cumsum([g, g, n, n])
    pg, qg, vm, va, cost = np.split(y, cuts, axis=1)
    return Dataset(loads[ok], pg, qg, vm, va, cost[:, 0], failed=len(results) - len(ok), seconds=seconds)


def _key(path: Path, region: Region, config: DatasetConfig) -> str:
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(region.lower.tobytes() + region.upper.tobytes())
    h.update(repr((config.samples, config.seed, f"{config.labeller}-v1")).encode())
    return f"{Path(path).stem}-{h.hexdigest()[:16]}"
