"""Figures of a certificate (matplotlib, Agg): certified intervals per element, the grid coloured by
worst-case violation, and the certified bound over time.

Every figure shows *margins* ``value - tolerance`` in each family's unit: below zero is safe. A certified
interval is drawn as a bar from the worst violation found (a point in the region reaches it) to the
certified bound (no point in the region exceeds it); the true worst case lies inside the bar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from gridverify.verify.certificate import Certificate, ConstraintRecord

COLOURS = {"verified": "#2a9d8f", "violated": "#e63946", "unknown": "#f4a261"}
BUS_FAMILIES = ("p_balance", "q_balance", "vm_min", "vm_max")
BRANCH_FAMILIES = ("thermal_from", "thermal_to", "angle_min", "angle_max")


def intervals_figure(
    cert: Certificate, families: Sequence[str], title: str, rates: dict | None = None
) -> Figure | None:
    """One panel per family: certified interval ``[worst, bound]`` per element, coloured by verdict.
    ``rates`` (element -> rate_a in pu, `branch_rates`) turns thermal panels into loading in percent."""
    present = [f for f in families if cert.family(f)]
    if not present:
        return None
    fig, axes = plt.subplots(len(present), 1, figsize=(10, 2.4 * len(present)), squeeze=False)
    for ax, fam in zip(axes[:, 0], present):
        recs = cert.family(fam)
        if rates is not None and fam.startswith("thermal"):
            _loading_panel(ax, recs, fam, rates)
        else:
            _interval_panel(ax, recs, fam)
        ax.set_xticks(np.arange(len(recs)), [str(r.element[1]) for r in recs], fontsize=6, rotation=90)
        ax.legend(loc="upper right", fontsize=6, ncol=3)
    axes[-1, 0].set_xlabel("element (case id)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _bars(ax: Any, recs: Sequence[ConstraintRecord], lo: np.ndarray, hi: np.ndarray) -> None:
    x = np.arange(len(recs))
    ax.vlines(x, lo, hi, colors=[COLOURS[r.verdict] for r in recs], linewidth=4)
    ax.scatter(x, lo, marker="_", color="black", s=40, zorder=3, label="worst found")
    ax.scatter(x, hi, marker="v", color="black", s=12, zorder=3, label="certified bound")


def _interval_panel(ax: Any, recs: Sequence[ConstraintRecord], family: str) -> None:
    lo = np.array([_finite(r.worst) for r in recs])
    hi = np.array([_finite(r.bound) for r in recs])
    _bars(ax, recs, lo, hi)
    ax.axhline(recs[0].tolerance, color="grey", linestyle="--", linewidth=0.8, label="tolerance")
    ax.set_ylabel(f"{family}\n[{recs[0].unit}]")
    span = np.r_[lo, hi, recs[0].tolerance]
    if recs[0].kind == "equality":  # residuals |h| span decades: from the tolerance up to the bound
        ax.set_yscale("symlog", linthresh=max(1e-6, recs[0].tolerance))
        ax.set_ylim(span.min() - 0.1 * abs(span.min()), span.max() + 0.1 * abs(span.max()))
    else:
        pad = 0.05 * (span.max() - span.min()) or 1e-3
        ax.set_ylim(span.min() - pad, span.max() + pad)


def loading_percent(value_pu2: np.ndarray, rate_pu: np.ndarray) -> np.ndarray:
    """``|S| / rate_a`` in percent from the thermal value ``|S|^2 - rate_a^2`` (monotone, so a bound on the
    value is a bound on the loading)."""
    return 100.0 * np.sqrt(np.maximum(1.0 + value_pu2 / rate_pu**2, 0.0))


def _loading_panel(ax: Any, recs: Sequence[ConstraintRecord], family: str, rates: dict) -> None:
    rate = np.array([rates[tuple(r.element)] for r in recs])
    lo = loading_percent(np.array([_finite(r.worst) for r in recs]), rate)
    hi = loading_percent(np.array([_finite(r.bound) for r in recs]), rate)
    _bars(ax, recs, lo, hi)
    ax.axhline(100.0, color="grey", linestyle="--", linewidth=0.8, label="rate_a")
    ax.set_ylabel(f"{family}\nloading [%]")
    ax.set_ylim(0.0, max(110.0, float(hi.max()) * 1.05))


def branch_rates(data: Any) -> dict[tuple[str, int], float]:
    """Branch element -> ``rate_a`` (pu) of the case."""
    keys = zip(data.ids.branch_kinds, data.ids.branch.tolist())
    return {k: float(r) for k, r in zip(keys, data.branches.rate_a_pu)}


def _finite(v: float) -> float:
    return float(np.clip(v, -1e12, 1e12))


def grid_figure(cert: Certificate, coordinates: np.ndarray, data: Any) -> Figure:
    """The grid at ``coordinates`` (N, 2) in the case's bus order: branches coloured by their certified
    maximum loading (% of rate_a, either end), buses by their certified worst balance residual (pu, P or Q).
    Grey: not verified in this certificate."""
    fig, ax = plt.subplots(figsize=(9, 7))
    loading = _branch_loading(cert, data)
    lmax = max(100.0, float(np.nanmax(loading, initial=0.0)))
    lnorm, lmap = matplotlib.colors.Normalize(0.0, lmax), matplotlib.colormaps["RdYlGn_r"]
    f, t = data.branches.from_bus, data.branches.to_bus
    for k in range(len(f)):
        colour = "lightgrey" if np.isnan(loading[k]) else lmap(lnorm(loading[k]))
        xy = coordinates[[f[k], t[k]]]
        ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=3, zorder=1)
    residual = _bus_residual(cert, data.ids.bus.tolist())
    live = ~np.isnan(residual)
    ax.scatter(*coordinates[~live].T, color="lightgrey", s=110, edgecolors="black", zorder=2)
    sc = ax.scatter(
        *coordinates[live].T, c=residual[live], cmap="Purples", s=110, edgecolors="black", zorder=2
    )
    for i, b in enumerate(data.ids.bus):
        ax.annotate(str(b), coordinates[i], fontsize=6, ha="center", va="center", zorder=3)
    fig.colorbar(matplotlib.cm.ScalarMappable(lnorm, lmap), ax=ax, label="branch: certified max loading [%]")
    if live.any():
        fig.colorbar(sc, ax=ax, label="bus: certified max balance residual |h| [pu]")
    ax.set_title(f"{cert.case}: certified worst cases over the region")
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def _bus_residual(cert: Certificate, ids: list[int]) -> np.ndarray:
    worst = dict.fromkeys(ids, np.nan)
    for r in cert.records:
        if r.family in ("p_balance", "q_balance") and r.element[1] in worst:
            worst[r.element[1]] = np.nanmax([worst[r.element[1]], _finite(r.bound)])
    return np.array(list(worst.values()))


def _branch_loading(cert: Certificate, data: Any) -> np.ndarray:
    rates = branch_rates(data)
    worst = dict.fromkeys(rates, np.nan)
    for r in cert.records:
        key = tuple(r.element)
        if r.family in ("thermal_from", "thermal_to") and key in worst:
            pct = float(loading_percent(np.array(_finite(r.bound)), np.array(rates[key])))
            worst[key] = np.nanmax([worst[key], pct])
    return np.array(list(worst.values()))


def history_figure(cert: Certificate, top: int = 8) -> Figure | None:
    """Certified bound over time for the ``top`` constraints whose bound the search lowered most (or the
    slowest ones when it lowered none)."""
    recs = [r for r in cert.records if r.history]
    if not recs:
        return None
    drop = {r.name: _finite(r.history[0][1]) - _finite(r.history[-1][1]) for r in recs}
    moved = sorted((r for r in recs if drop[r.name] > 0), key=lambda r: drop[r.name], reverse=True)[:top]
    shown = moved or sorted(recs, key=lambda r: r.seconds, reverse=True)[:top]
    fig, ax = plt.subplots(figsize=(9, 5))
    values = []
    for r in shown:
        s, u = np.array([(t, _finite(b)) for t, b in r.history]).T
        y = np.append(u, u[-1]) - r.tolerance
        values.append(y)
        ax.step(np.append(s, max(r.seconds, s[-1])), y, where="post", label=r.name)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
    small = np.abs(np.concatenate(values))
    ax.set_yscale("symlog", linthresh=max(1e-9, float(small[small > 0].min(initial=1.0)) / 2))
    ax.set_xlabel("seconds since the search started")
    ax.set_ylabel("certified bound - tolerance")
    what = "bound lowered most by the search" if moved else "slowest; the search lowered no bound"
    ax.set_title(f"{cert.case}: certified bound over time ({len(shown)} constraints, {what})")
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return fig


def bus_coordinates(net: Any, data: Any) -> np.ndarray:
    """(N, 2) coordinates of the case's buses: the net's ``bus.geo`` when it has them, else those of the
    IEEE case of the same name and size in ``pandapower.networks``, else a networkx layout of the grid."""
    for source in (net, _ieee_net(data.name, len(data.ids.bus))):
        xy = _geo(source, data) if source is not None else None
        if xy is not None:
            return xy
    import networkx as nx

    g = nx.Graph(list(zip(data.branches.from_bus.tolist(), data.branches.to_bus.tolist())))
    g.add_nodes_from(range(len(data.ids.bus)))
    pos = nx.kamada_kawai_layout(g)
    return np.array([pos[i] for i in range(len(data.ids.bus))])


def _geo(net: Any, data: Any) -> np.ndarray | None:
    if "geo" not in net.bus.columns or data.pandapower is None:
        return None
    geo = net.bus.geo.reindex(data.pandapower.bus)
    if geo.isna().any():
        return None
    return np.array([json.loads(g)["coordinates"][:2] for g in geo])


def _ieee_net(name: str, n_bus: int) -> Any:
    import warnings

    import pandapower.networks as pn

    stem = name.removeprefix("pglib_opf_").split("_")[0]
    if not stem.startswith("case") or not hasattr(pn, stem):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(pn, stem)()
    return net if len(net.bus) == n_bus else None


def save(fig: Figure | None, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
