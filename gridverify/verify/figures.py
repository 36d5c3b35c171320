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


def intervals_figure(cert: Certificate, families: Sequence[str], title: str) -> Figure | None:
    """One panel per family: certified interval ``[worst, bound]`` per element, coloured by verdict."""
    present = [f for f in families if cert.family(f)]
    if not present:
        return None
    fig, axes = plt.subplots(len(present), 1, figsize=(10, 2.4 * len(present)), squeeze=False)
    for ax, fam in zip(axes[:, 0], present):
        _interval_panel(ax, cert.family(fam), fam)
    axes[-1, 0].set_xlabel("element (case id)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _interval_panel(ax: Any, recs: Sequence[ConstraintRecord], family: str) -> None:
    x = np.arange(len(recs))
    lo = np.array([_finite(r.worst) for r in recs])
    hi = np.array([_finite(r.bound) for r in recs])
    ax.vlines(x, lo, hi, colors=[COLOURS[r.verdict] for r in recs], linewidth=4)
    ax.scatter(x, lo, marker="_", color="black", s=40, zorder=3, label="worst found")
    ax.scatter(x, hi, marker="v", color="black", s=12, zorder=3, label="certified bound")
    ax.axhline(recs[0].tolerance, color="grey", linestyle="--", linewidth=0.8, label="tolerance")
    ax.set_ylabel(f"{family}\n[{recs[0].unit}]")
    ax.set_yscale("symlog", linthresh=max(1e-6, recs[0].tolerance))
    span = np.r_[lo, hi, recs[0].tolerance]
    ax.set_ylim(span.min() - 0.1 * abs(span.min()), span.max() + 0.1 * abs(span.max()))
    ax.set_xticks(x, [str(r.element[1]) for r in recs], fontsize=6, rotation=90)
    ax.legend(loc="upper right", fontsize=6, ncol=3)


def _finite(v: float) -> float:
    return float(np.clip(v, -1e12, 1e12))


def grid_figure(cert: Certificate, net: Any, coordinates: np.ndarray, data: Any) -> Figure:
    """The grid at ``coordinates`` (N, 2) in the case's bus order: buses coloured by their worst bus
    violation margin, branches by their worst thermal margin (``bound - tolerance``; red: can be violated)."""
    fig, ax = plt.subplots(figsize=(8, 7))
    bus_margin = _margins(cert, BUS_FAMILIES, data.ids.bus.tolist())
    br_margin = _branch_margins(cert, data)
    norm = matplotlib.colors.TwoSlopeNorm(vcenter=0.0, vmin=min(-1e-9, *bus_margin, *br_margin),
                                          vmax=max(1e-9, *bus_margin, *br_margin))  # fmt: skip
    cmap = matplotlib.colormaps["RdYlGn_r"]
    f, t = data.branches.from_bus, data.branches.to_bus
    for k in range(len(f)):
        xy = coordinates[[f[k], t[k]]]
        ax.plot(xy[:, 0], xy[:, 1], color=cmap(norm(br_margin[k])), linewidth=2.5, zorder=1)
    sc = ax.scatter(coordinates[:, 0], coordinates[:, 1], c=bus_margin, cmap=cmap, norm=norm, s=90,
                    edgecolors="black", zorder=2)  # fmt: skip
    for i, b in enumerate(data.ids.bus):
        ax.annotate(str(b), coordinates[i], fontsize=6, ha="center", va="center", zorder=3)
    fig.colorbar(sc, ax=ax, label="certified bound - tolerance (worst family of the element)")
    ax.set_title(
        f"{cert.case}: worst certified margin per element\n(buses: balance and voltage; branches: thermal)"
    )
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def _margins(cert: Certificate, families: Sequence[str], ids: list[int]) -> list[float]:
    worst = dict.fromkeys(ids, -np.inf)
    for r in cert.records:
        if r.family in families and r.element[1] in worst:
            worst[r.element[1]] = max(worst[r.element[1]], r.bound - r.tolerance)
    return [_finite(v) if np.isfinite(v) else 0.0 for v in worst.values()]


def _branch_margins(cert: Certificate, data: Any) -> list[float]:
    keys = list(zip(data.ids.branch_kinds, data.ids.branch.tolist()))
    worst = dict.fromkeys(keys, -np.inf)
    for r in cert.records:
        if r.family in ("thermal_from", "thermal_to") and tuple(r.element) in worst:
            worst[tuple(r.element)] = max(worst[tuple(r.element)], r.bound - r.tolerance)
    return [_finite(v) if np.isfinite(v) else 0.0 for v in worst.values()]


def history_figure(cert: Certificate, top: int = 8) -> Figure | None:
    """Certified bound over time: the largest bound of each family, and the ``top`` slowest constraints."""
    recs = [r for r in cert.records if r.history]
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    slow = sorted(recs, key=lambda r: r.seconds, reverse=True)[:top]
    for r in slow:
        s, u = np.array(r.history).T
        ax.step(np.append(s, r.seconds), np.append(u, u[-1]) - r.tolerance, where="post", label=r.name)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_xlabel("seconds since the search started")
    ax.set_ylabel("certified bound - tolerance")
    ax.set_title(f"{cert.case}: certified bound during the search ({len(slow)} slowest constraints)")
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
