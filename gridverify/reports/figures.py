"""Figures of a certificate (matplotlib, Agg): certified intervals per element, the grid coloured by
worst-case violation, and the certified bound over time.

Every figure shows *margins* ``value - tolerance`` in each family's unit: below zero is safe. A certified
interval is drawn as a bar from the worst violation found (a point in the region reaches it) to the
certified bound (no point in the region exceeds it); the true worst case lies inside the bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gridverify.deadline import Deadline
from gridverify.grid.families import BALANCE, THERMAL, of_element
from gridverify.grid.net import bus_geo
from gridverify.specs.certificate import Certificate, ConstraintRecord

COLOURS = {"verified": "#2a9d8f", "violated": "#e63946", "unknown": "#f4a261"}
UNDRAWN = ("ref_angle",)  # one bus, its angle exact in every formulation: no interval to draw
PANELS = {  # file -> families (of one element type, `gridverify.grid.families`), title, x axis label
    "intervals_bus.png": (of_element("bus", UNDRAWN), "buses", "bus (case id)"),
    "intervals_branch.png": (of_element("branch", UNDRAWN), "branches", "branch (from bus - to bus)"),
    "intervals_generator.png": (of_element("gen", UNDRAWN), "generators", "generator (case id)"),
}
LOADING_CAP_PERCENT = 200.0  # loading axes and the grid's colours stop here; bounds beyond are marked


MAX_TICKS = 120
"""At most this many element labels per panel (beyond it every k-th element is labelled)."""
KAMADA_KAWAI_BUSES = 400
"""Grids up to this many buses without coordinates are drawn with a Kamada-Kawai layout, larger ones with a
seeded spring layout."""


def draw_all(
    cert: Certificate, folder: Path, case: Any | None = None, deadline: Deadline | None = None
) -> tuple[list[Path], list[str]]:
    """Every figure this certificate has data for, saved into ``folder``; ``case`` adds the branch ratings
    (thermal panels in % of rate_a) and the grid drawing. Figures not started by ``deadline``
    are left out. Returns the files written and the names of those left out."""
    rates = None if case is None else branch_rates(case.data)
    jobs: list[tuple[str, Callable[[], Figure | None]]] = [
        (name, partial(intervals_figure, cert, fams, title, rates, xlabel))
        for name, (fams, title, xlabel) in PANELS.items()
    ]
    jobs.append(("bound_vs_time.png", partial(history_figure, cert)))
    if case is not None:
        jobs.append(("grid.png", lambda: grid_figure(cert, bus_coordinates(case.net, case.data), case.data)))
    made, late = [], []
    for name, draw in jobs:
        if deadline is not None and deadline.passed():
            late.append(name)
        else:
            made.append(save(draw(), folder / name))
    return [p for p in made if p is not None], late


def intervals_figure(
    cert: Certificate,
    families: Sequence[str],
    title: str,
    rates: dict | None = None,
    xlabel: str = "element (case id)",
) -> Figure | None:
    """One panel per family: certified interval ``[worst, bound]`` per element, coloured by verdict, with
    one legend above the panels (verdict colours, markers, reference lines). ``rates`` (element -> rate_a
    in pu, `branch_rates`) turns thermal panels into loading in percent."""
    present = [f for f in families if cert.family(f)]
    if not present:
        return None
    fig, axes = plt.subplots(len(present), 1, figsize=(10, 2.4 * len(present) + 0.6), squeeze=False)
    for ax, fam in zip(axes[:, 0], present):
        recs = cert.family(fam)
        if rates is not None and fam in THERMAL:
            _loading_panel(ax, recs, fam, rates)
        else:
            _interval_panel(ax, recs, fam)
        ticks = [tick_label(r) for r in recs]
        step = -(
            -len(recs) // MAX_TICKS
        )  # a large case labels every step-th element (drawing 14k is minutes)
        rotation = 90 if max(map(len, ticks)) > 2 else 0
        ax.set_xticks(np.arange(len(recs))[::step], ticks[::step], fontsize=6, rotation=rotation)
        ax.set_xlim(-0.7, len(recs) - 0.3)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    _legend(fig, axes[:, 0])
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.36 / fig.get_figheight()), h_pad=0.6)
    return fig


def tick_label(record: ConstraintRecord) -> str:
    """A branch as ``from-to`` (its buses), any other element by its case id."""
    inside = record.name.partition("[")[2].rstrip("]")
    return inside.rpartition(": ")[2] if ": " in inside else str(record.element[1])


def _legend(fig: Figure, axes: Sequence[Any]) -> None:
    """Verdict colours, the two markers and every reference line used, once, above the panels."""
    handles = [Patch(color=c, label=v) for v, c in COLOURS.items()]
    handles += [
        Line2D([], [], marker="_", color="black", linestyle="none", markersize=8, label="worst found"),
        Line2D([], [], marker="v", color="black", linestyle="none", markersize=4, label="certified bound"),
    ]
    seen = {h.get_label() for h in handles}
    for ax in axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_") and line.get_label() not in seen:
                handles.append(line)
                seen.add(line.get_label())
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.28 / fig.get_figheight()))  # fmt: skip


def _bars(ax: Any, recs: Sequence[ConstraintRecord], lo: np.ndarray, hi: np.ndarray) -> None:
    x = np.arange(len(recs))
    ax.vlines(x, lo, hi, colors=[COLOURS[r.verdict] for r in recs], linewidth=4)
    ax.scatter(x, lo, marker="_", color="black", s=40, zorder=3, clip_on=False)
    ax.scatter(x, hi, marker="v", color="black", s=12, zorder=3, clip_on=False)


def _interval_panel(ax: Any, recs: Sequence[ConstraintRecord], family: str) -> None:
    lo = np.array([_finite(r.worst) for r in recs])
    hi = np.array([_finite(r.bound) for r in recs])
    tol = recs[0].tolerance
    _bars(ax, recs, lo, hi)
    ax.axhline(tol, color="grey", linestyle="--", linewidth=0.8, label="tolerance")
    ax.set_ylabel(f"{family}\n[{recs[0].unit}]")
    span = np.r_[lo, hi, tol]
    if recs[0].kind == "equality":  # residuals |h| span decades: a log axis with room above the bounds
        ax.set_yscale("symlog", linthresh=max(1e-6, tol))
        low = 0.5 * span.min() if span.min() > 0 else 1.5 * span.min()
        ax.set_ylim(low, 3.0 * span.max())
    else:
        pad = 0.08 * (span.max() - span.min()) or 1e-3
        ax.set_ylim(span.min() - pad, span.max() + pad)


def loading_percent(value_pu2: np.ndarray, rate_pu: np.ndarray) -> np.ndarray:
    """``|S| / rate_a`` in percent from the thermal value ``|S|^2 - rate_a^2`` (monotone, so a bound on the
    value is a bound on the loading)."""
    return 100.0 * np.sqrt(np.maximum(1.0 + value_pu2 / rate_pu**2, 0.0))


def _loading_panel(ax: Any, recs: Sequence[ConstraintRecord], family: str, rates: dict) -> None:
    """Loading in % of rate_a; the axis stops at `LOADING_CAP_PERCENT` (or just above the largest loading
    found), and bounds beyond it are marked at the top with their value."""
    rate = np.array([rates[tuple(r.element)] for r in recs])
    lo = loading_percent(np.array([_finite(r.worst) for r in recs]), rate)
    hi = loading_percent(np.array([_finite(r.bound) for r in recs]), rate)
    top = min(max(110.0, float(hi.max()) * 1.05), max(LOADING_CAP_PERCENT, float(lo.max()) * 1.2))
    _bars(ax, recs, lo, np.minimum(hi, top))
    ax.axhline(100.0, color="grey", linestyle="--", linewidth=0.8, label="rate_a (100 %)")
    for x in np.flatnonzero(hi > top):
        ax.annotate(f"{hi[x]:.0f} %", (x, top), xytext=(3, -2), textcoords="offset points", fontsize=5,
                    ha="left", va="top", rotation=90)  # fmt: skip
    ax.set_ylabel(f"{family}\nloading [%]")
    ax.set_ylim(0.0, top)


def branch_rates(data: Any) -> dict[tuple[str, int], float]:
    """Branch element -> ``rate_a`` (pu) of the case."""
    keys = zip(data.ids.branch_kinds, data.ids.branch.tolist())
    return {k: float(r) for k, r in zip(keys, data.branches.rate_a_pu)}


def _finite(v: float) -> float:
    return float(np.clip(v, -1e12, 1e12))


def grid_figure(cert: Certificate, coordinates: np.ndarray, data: Any) -> Figure:
    """The grid at ``coordinates`` (N, 2) in the case's bus order. Branches are coloured by the largest
    loading found (% of rate_a, either end: a load in the region reaches it), on a scale that turns red at
    100 % and stops at `LOADING_CAP_PERCENT`; a branch whose certified bound exceeds 100 % without a load
    found above it is dashed. Buses are coloured by their certified worst balance residual (pu, P or Q),
    labels in white on dark nodes. Grey: not verified in this certificate."""
    fig, ax = plt.subplots(figsize=(9, 7))
    found, bound = _branch_loading(cert, data, "worst"), _branch_loading(cert, data, "bound")
    lnorm = matplotlib.colors.TwoSlopeNorm(vcenter=100.0, vmin=0.0, vmax=LOADING_CAP_PERCENT)
    lmap = _loading_colours()
    f, t = data.branches.from_bus, data.branches.to_bus
    for k in range(len(f)):
        colour = "lightgrey" if np.isnan(found[k]) else lmap(lnorm(min(found[k], LOADING_CAP_PERCENT)))
        undecided = bound[k] > 100.0 >= found[k]
        xy = coordinates[[f[k], t[k]]]
        ax.plot(xy[:, 0], xy[:, 1], color=colour, zorder=1, linestyle="--" if undecided else "-",
                linewidth=5 if found[k] > 100.0 else 3)  # fmt: skip
    _mark_confirmed(ax, cert, coordinates, data)
    residual = _bus_residual(cert, data.ids.bus.tolist())
    live = ~np.isnan(residual)
    ax.scatter(*coordinates[~live].T, color="lightgrey", s=140, edgecolors="black", zorder=2)
    bnorm = matplotlib.colors.Normalize(0.0, float(np.nanmax(residual, initial=0.0)) or 1.0)
    bmap = matplotlib.colormaps["Purples"]
    ax.scatter(*coordinates[live].T, c=bmap(bnorm(residual[live])), s=140, edgecolors="black", zorder=2)
    for i, b in enumerate(data.ids.bus):
        dark = live[i] and _luminance(bmap(bnorm(residual[i]))) < 0.5
        ax.annotate(str(b), coordinates[i], fontsize=6, ha="center", va="center", zorder=3,
                    color="white" if dark else "black")  # fmt: skip
    fig.colorbar(matplotlib.cm.ScalarMappable(lnorm, lmap), ax=ax, extend="max",
                 label="branch: largest loading found [% of rate_a]")  # fmt: skip
    if live.any():
        fig.colorbar(matplotlib.cm.ScalarMappable(bnorm, bmap), ax=ax,
                     label="bus: certified max balance residual |h| [pu]")  # fmt: skip
    keys = [
        Line2D([], [], color="grey", linewidth=5, label="overloaded at a load found (> 100 %)"),
        Line2D([], [], color="grey", linewidth=3, linestyle="--", label="bound > 100 %, none found"),
    ]
    ax.legend(handles=keys, loc="upper left", bbox_to_anchor=(0.0, 0.0), fontsize=7, frameon=False, ncol=2)
    ax.set_title(f"{cert.case}: loading found per branch, certified balance residual per bus")
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def _loading_colours() -> matplotlib.colors.Colormap:
    """Green to yellow up to 100 % of rate_a, then a jump to orange-red and dark red beyond."""
    base = matplotlib.colormaps["RdYlGn_r"]
    below, above = base(np.linspace(0.0, 0.45, 128)), base(np.linspace(0.75, 1.0, 128))
    return matplotlib.colors.ListedColormap(np.vstack([below, above]), name="loading")


def _mark_confirmed(ax: Any, cert: Certificate, coordinates: np.ndarray, data: Any) -> None:
    """Write pandapower's loading (% of rate_a, its worst end) beside every branch that its power flow at
    a witness overloads."""
    worst: dict[str, float] = {}
    for r in cert.records:
        for f in ((r.replay or {}).get("consequences") or {}).get("findings", ()):
            if f["what"] == "overload" and f.get("percent") is not None:
                label = f["element"].rpartition(" (")[0]
                worst[label] = max(worst.get(label, 0.0), f["percent"])
    for k in range(len(data.branches.from_bus)):
        kind, idx = data.ids.branch_kinds[k], int(data.ids.branch[k])
        f, t = data.ids.bus[data.branches.from_bus[k]], data.ids.bus[data.branches.to_bus[k]]
        pct = worst.get(f"{kind} {idx}: {f}-{t}")
        if pct is not None:
            mid = coordinates[[data.branches.from_bus[k], data.branches.to_bus[k]]].mean(axis=0)
            ax.annotate(f"{pct:.0f} % in pandapower", mid, xytext=(0, 6), textcoords="offset points",
                        fontsize=7, color="#9b0000", ha="center", fontweight="bold", zorder=4,
                        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})  # fmt: skip


def _luminance(rgba: tuple[float, ...]) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _bus_residual(cert: Certificate, ids: list[int]) -> np.ndarray:
    worst = dict.fromkeys(ids, np.nan)
    for r in cert.records:
        if r.family in BALANCE and r.element[1] in worst:
            worst[r.element[1]] = np.nanmax([worst[r.element[1]], _finite(r.bound)])
    return np.array(list(worst.values()))


def _branch_loading(cert: Certificate, data: Any, which: str) -> np.ndarray:
    """Per branch, the largest loading (% of rate_a, either end) from ``which`` (``worst`` found or
    certified ``bound``) of its thermal records; NaN where it has none."""
    rates = branch_rates(data)
    out = dict.fromkeys(rates, np.nan)
    for r in cert.records:
        key = tuple(r.element)
        if r.family in THERMAL and key in out:
            value = _finite(getattr(r, which))
            pct = float(loading_percent(np.array(value), np.array(rates[key])))
            out[key] = np.nanmax([out[key], pct])
    return np.array(list(out.values()))


def history_figure(cert: Certificate, top: int = 8) -> Figure | None:
    """Certified bound over time for the ``top`` constraints whose bound the search lowered most; None
    when the search lowered no bound (nothing to show)."""
    recs = [r for r in cert.records if len(r.history) > 1]
    drop = {r.name: _finite(r.history[0][1]) - _finite(r.history[-1][1]) for r in recs}
    shown = sorted((r for r in recs if drop[r.name] > 0), key=lambda r: drop[r.name], reverse=True)[:top]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(10, 5))
    values = []
    for r in shown:
        s, u = np.array([(t, _finite(b)) for t, b in r.history]).T
        y = np.append(u, u[-1]) - r.tolerance
        values.append(y)
        ax.step(np.append(s, max(r.seconds, s[-1])), y, where="post", label=r.name)
    y = np.concatenate(values)
    if np.all(y > 0):
        ax.set_yscale("log")
        ax.set_ylim(y.min() / 1.5, y.max() * 1.5)
    else:
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8, label="bound = tolerance")
        small = np.abs(y)
        ax.set_yscale("symlog", linthresh=max(1e-9, float(small[small > 0].min(initial=1.0)) / 2))
    ax.set_xlabel("seconds since the search started")
    ax.set_ylabel("certified bound - tolerance (family's unit)")
    ax.set_title(f"{cert.case}: certified bound over time ({len(shown)} constraints the search lowered most)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def bus_coordinates(net: Any, data: Any) -> np.ndarray:
    """(N, 2) coordinates of the case's buses: pandapower's (`gridverify.grid.net.bus_geo`: the net's own,
    else those of the IEEE case of the same name and size), else a networkx layout of the grid."""
    xy = bus_geo(net, data)
    if xy is not None:
        return xy
    import networkx as nx

    g = nx.Graph(list(zip(data.branches.from_bus.tolist(), data.branches.to_bus.tolist())))
    g.add_nodes_from(range(len(data.ids.bus)))
    if len(data.ids.bus) <= KAMADA_KAWAI_BUSES:
        pos = nx.kamada_kawai_layout(g)
    else:  # Kamada-Kawai is quadratic in memory and took 31 s on case1354: a seeded force layout instead
        pos = nx.spring_layout(g, seed=0, iterations=50, method="force")
    return np.array([pos[i] for i in range(len(data.ids.bus))])


def save(fig: Figure | None, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
