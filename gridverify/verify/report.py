"""The report of a certificate: ``report.md`` (summary per family, worst violations with pandapower's own
numbers, the witness load) and the figures of `gridverify.verify.figures`, in one folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridverify.verify import figures
from gridverify.verify.certificate import VERDICTS, Certificate, ConstraintRecord

FIGURES = {
    "intervals_bus.png": "certified interval per bus (balance residuals |h| and voltage limits)",
    "intervals_branch.png": "certified interval per branch (thermal: loading in % of rate_a at both ends; "
    "angle differences)",
    "intervals_generator.png": "certified interval per generator (active and reactive limits)",
    "grid.png": "the grid: branches coloured by certified max loading, buses by max balance residual",
    "bound_vs_time.png": "certified bound over the search's time for the slowest constraints",
}


def write_report(cert: Certificate, folder: str | Path, case: Any | None = None) -> Path:
    """Write ``report.md`` and the figures into ``folder``; ``case`` (a `gridverify.surrogate.Case`) adds
    the grid drawing and bus names of the witness. Returns the path of ``report.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = _figures(cert, folder, case)
    text = render_markdown(cert, [p.name for p in written])
    path = folder / "report.md"
    path.write_text(text)
    return path


def _figures(cert: Certificate, folder: Path, case: Any | None) -> list[Path]:
    panels = {
        "intervals_bus.png": (figures.BUS_FAMILIES, "buses"),
        "intervals_branch.png": (figures.BRANCH_FAMILIES, "branches"),
        "intervals_generator.png": (("pg_min", "pg_max", "qg_min", "qg_max"), "generators"),
    }
    rates = None if case is None else figures.branch_rates(case.data)
    made = [
        figures.save(figures.intervals_figure(cert, fams, title, rates), folder / name)
        for name, (fams, title) in panels.items()
    ]
    made.append(figures.save(figures.history_figure(cert), folder / "bound_vs_time.png"))
    if case is not None:
        xy = figures.bus_coordinates(case.net, case.data)
        made.append(figures.save(figures.grid_figure(cert, xy, case.data), folder / "grid.png"))
    return [p for p in made if p is not None]


def render_markdown(cert: Certificate, figure_names: Sequence[str] = ()) -> str:
    counts = cert.counts()
    lines = [
        f"# gridverify report: {cert.case}",
        "",
        f"- surrogate: `{cert.surrogate[:16]}` (sha256 of weights and layout)",
        f"- region: {cert.region.get('label') or 'custom box'} ({len(cert.input_names) or '?'} load inputs)",
        f"- settings: {', '.join(f'{k}={v}' for k, v in cert.settings.items())}",
        f"- {len(cert.records)} constraints in {cert.seconds:.1f} s: "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICTS),
        f"- gridverify {cert.gridverify}, {cert.created}",
        "",
        "How to read: a constraint is *verified* when its certified bound (no load in the region does",
        "worse) is at most the tolerance, *violated* when a load in the region (re-checked in float64)",
        "exceeds the tolerance, *unknown* otherwise. Violations are in each family's unit: `g(x)` for",
        "`g <= 0` limits (thermal: `p^2 + q^2 - rate_a^2` in pu^2), `|h(x)|` for balance equations (pu on",
        "the case's base).",
        "",
        "## Summary per constraint family",
        "",
        "| family | unit | verified | violated | unknown | worst found | certified bound |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for fam, row in cert.summary().items():
        unit = cert.family(fam)[0].unit
        lines.append(
            f"| {fam} | {unit} | {row['verified']:.0f} | {row['violated']:.0f} | {row['unknown']:.0f} "
            f"| {_num(row['worst_found'])} | {_num(row['worst_bound'])} |"
        )
    lines += _violations(cert)
    lines += _unknowns(cert)
    lines += _witness(cert)
    if figure_names:
        lines += ["", "## Figures", ""]
        lines += [f"- `{n}`: {FIGURES.get(n, '')}\n\n  ![{n}]({n})" for n in figure_names]
    return "\n".join(lines) + "\n"


def _violations(cert: Certificate) -> list[str]:
    worst = cert.worst_violations(15)
    if not worst:
        return ["", "No constraint is violated in the region."]
    lines = [
        "",
        "## Worst violations",
        "",
        "gridverify: the violation at the witness under the surrogate's output; pandapower: the same",
        "constraint after pandapower's power flow (`runpp`) at the witness load with the surrogate's",
        "set-points.",
        "",
        "| constraint | worst found | certified bound | pandapower | confirmed | pandapower results |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in worst:
        rp = r.replay or {}
        results = ", ".join(f"{k}={v:.4g}" for k, v in (rp.get("results") or {}).items())
        lines.append(
            f"| {r.name} | {_num(r.worst)} | {_num(r.bound)} | {_num(rp.get('pandapower'))} "
            f"| {_yes(rp.get('confirmed'))} | {results} |"
        )
    return lines


def _unknowns(cert: Certificate) -> list[str]:
    rest = sorted((r for r in cert.records if r.verdict == "unknown"), key=lambda r: r.bound, reverse=True)
    if not rest:
        return []
    lines = [
        "",
        "## Undecided (certified interval only)",
        "",
        "| constraint | worst found | certified bound |",
    ]
    lines.append("|---|---:|---:|")
    lines += [f"| {r.name} | {_num(r.worst)} | {_num(r.bound)} |" for r in rest[:20]]
    if len(rest) > 20:
        lines.append(f"| ... {len(rest) - 20} more | | |")
    return lines


def _witness(cert: Certificate) -> list[str]:
    worst = cert.worst_violations(1)
    if not worst or worst[0].witness is None:
        return []
    r: ConstraintRecord = worst[0]
    x = np.asarray(r.witness)
    names = cert.input_names or tuple(f"x_{i}" for i in range(len(x)))
    lines = [
        "",
        f"## Witness load of the worst violation ({r.name})",
        "",
        "| input | value (pu) |",
        "|---|---:|",
    ]
    lines += [f"| {n} | {v:.6f} |" for n, v in zip(names, x)]
    return lines


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{float(v):.4g}"


def _yes(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")
