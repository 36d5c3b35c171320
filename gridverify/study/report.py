"""The study report: one row per case x surrogate x region x tolerance x family, and two kinds of figure.

Written to ``OUT/report/`` next to the job results:

- ``summary.csv`` and ``summary.md``: verified / violated / unknown counts and the worst certified bound
  (largest certified upper bound of a violation; <= tolerance means every constraint of the family holds)
  and worst violation found, per row; ``summary.md`` also says how many jobs are finished, pending, failed;
- ``violation_vs_region.png``: worst certified bound against region size (half-width, % of nominal load),
  one panel per family, one line per case (and surrogate, tolerance);
- ``heatmap_<case>.png``: per case, families x regions coloured by the worst certified bound, each cell
  annotated with its verified / violated / unknown counts.

Figures are `matplotlib.figure.Figure` objects (no pyplot state), so a notebook can show them directly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

from gridverify.study.store import JobStore

__all__ = [
    "SummaryRow",
    "heatmap_figure",
    "markdown_table",
    "summary_rows",
    "violation_figure",
    "write_report",
]


@dataclass(frozen=True)
class SummaryRow:
    """One family of one job: counts of each verdict, worst certified bound and worst violation found."""

    case: str
    surrogate: str
    region: str
    region_pct: float
    tolerance: float
    family: str
    verified: int
    violated: int
    unknown: int
    worst_bound: float
    worst_found: float
    job: str

    @property
    def series(self) -> str:
        """What a line of `violation_figure` follows across regions."""
        return f"{Path(self.case).name} {Path(self.surrogate).stem} tol {self.tolerance:g}"


def summary_rows(store: JobStore) -> list[SummaryRow]:
    """Rows of every finished job of the store's current plan, in plan order."""
    _, jobs = store.plan()
    done = store.completed(jobs)
    rows = []
    for job in jobs:
        if job.id not in done:
            continue
        for family, s in done[job.id].summary().items():
            counts = (int(s["verified"]), int(s["violated"]), int(s["unknown"]))
            where = (job.case, job.surrogate, job.region, job.region_pct, job.tolerance, family)
            rows.append(SummaryRow(*where, *counts, float(s["worst_bound"]), float(s["worst_found"]), job.id))
    return rows


def write_report(store: JobStore) -> Path:
    """Summary table (CSV, markdown) and figures under ``store.root / "report"``; returns that folder."""
    folder = store.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(store)
    _write_csv(folder / "summary.csv", rows)
    (folder / "summary.md").write_text(_markdown(store, rows))
    if rows:
        violation_figure(rows).savefig(folder / "violation_vs_region.png", dpi=110)
        for case in dict.fromkeys(r.case for r in rows):
            heatmap_figure(rows, case).savefig(folder / f"heatmap_{Path(case).name}.png", dpi=110)
    return folder


def _write_csv(path: Path, rows: Sequence[SummaryRow]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f.name for f in fields(SummaryRow)])
        writer.writerows(astuple(r) for r in rows)


def _markdown(store: JobStore, rows: Sequence[SummaryRow]) -> str:
    name, jobs = store.plan()
    done = sum(store.is_done(j.id) for j in jobs)
    failed = set(store.failures()) & {j.id for j in jobs}
    head = f"# Study {name}\n\n{done} of {len(jobs)} jobs finished, {len(failed)} failed"
    head += f", {len(jobs) - done - len(failed)} not run yet.\n\n"
    return head + markdown_table(rows) + "\n"


def markdown_table(rows: Sequence[SummaryRow]) -> str:
    """The summary as a markdown table (one line per row)."""
    cols = ("case", "surrogate", "region", "tolerance", "family", "verified", "violated", "unknown")
    lines = ["| " + " | ".join((*cols, "worst bound", "worst found")) + " |", "|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = [str(getattr(r, c)) if c != "tolerance" else f"{r.tolerance:g}" for c in cols]
        numbers = [f"{v + 0.0:.4g}" for v in (r.worst_bound, r.worst_found)]  # + 0.0: no "-0"
        lines.append("| " + " | ".join([*cells, *numbers]) + " |")
    return "\n".join(lines)


# -- figures -----------------------------------------------------------------------------------------------


def violation_figure(rows: Sequence[SummaryRow]) -> Figure:
    """Worst certified bound vs region size, a panel per family, a line per case / surrogate / tolerance."""
    families = list(dict.fromkeys(r.family for r in rows))
    ncols = min(4, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, family in zip(axes, families):
        _family_panel(ax, [r for r in rows if r.family == family], family)
    for ax in axes[len(families) :]:
        ax.set_visible(False)
    fig.suptitle("worst certified violation bound vs load region size")
    return fig


def _family_panel(ax: Axes, rows: Sequence[SummaryRow], family: str) -> None:
    for series in dict.fromkeys(r.series for r in rows):
        points = sorted((r.region_pct, _finite(r.worst_bound)) for r in rows if r.series == series)
        ax.plot(*zip(*points), marker="o", label=series)
    tolerance = min(r.tolerance for r in rows)
    ax.axhline(tolerance, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("symlog", linthresh=tolerance)
    ax.set_title(family, fontsize=9)
    ax.set_xlabel("region half-width (% of nominal load)", fontsize=8)
    ax.legend(fontsize=6)


def _finite(value: float) -> float:
    """An infinite bound (no certificate at all) is drawn as a gap."""
    return value if math.isfinite(value) else math.nan


def heatmap_figure(rows: Sequence[SummaryRow], case: str) -> Figure:
    """Families x regions of one case, annotated with the counts verified/violated/unknown and coloured by
    the worst certified bound's excess over the tolerance (green: every constraint proved with margin;
    red: some bound above the tolerance), on a symmetric log scale."""
    mine = [r for r in rows if r.case == case]
    families = list(dict.fromkeys(r.family for r in mine))
    columns = list(dict.fromkeys(_column(r, mine) for r in sorted(mine, key=lambda r: r.region_pct)))
    excess = np.full((len(families), len(columns)), np.nan)
    fig = Figure(figsize=(2.8 + 1.1 * len(columns), 1.4 + 0.35 * len(families)), layout="constrained")
    ax = fig.subplots()
    for r in mine:
        i, j = families.index(r.family), columns.index(_column(r, mine))
        excess[i, j] = _finite(r.worst_bound) - r.tolerance
        ax.text(j, i, f"{r.verified}/{r.violated}/{r.unknown}", ha="center", va="center", fontsize=7)
    tolerance = min(r.tolerance for r in mine)
    top = max(float(np.nanmax(np.abs(excess))) if np.isfinite(excess).any() else tolerance, tolerance)
    norm = SymLogNorm(tolerance, vmin=-top, vmax=top)
    image = ax.imshow(excess, cmap="RdYlGn_r", norm=norm, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(families)), families, fontsize=8)
    ax.set_title(f"{Path(case).name}: verified/violated/unknown", fontsize=9)
    fig.colorbar(image, ax=ax, label="worst bound - tolerance")
    return fig


def _column(row: SummaryRow, rows: Sequence[SummaryRow]) -> str:
    """A column label: the region, plus surrogate and tolerance where the case has several of them."""
    label = row.region
    if len({r.surrogate for r in rows}) > 1:
        label += f" {Path(row.surrogate).stem}"
    if len({r.tolerance for r in rows}) > 1:
        label += f" tol {row.tolerance:g}"
    return label
