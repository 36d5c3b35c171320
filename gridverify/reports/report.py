"""The report of a certificate: ``report.md`` and the figures of `gridverify.reports.figures`, in one folder.

``report.md`` reads in the order an engineer asks: first what pandapower's power flow at the surrogate's
set-points shows physically (overloads against the case's ``rate_a``, voltages and generator limits, the
slack's power against the surrogate's), then the limit constraints the surrogate's own output violates, then
the surrogate's self-consistency (its balance residuals: how far its dispatch can be from a power-flow
solution anywhere in the region), then the summary per family, the undecided constraints and the witness.

A folder holds one run: figures of an earlier run that this report does not draw are removed (those newer
than the folder's ``certificate.json`` are this run's and stay), and a lock file (``.report.lock``, holding
the writer's pid) keeps two writers apart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridverify.deadline import Deadline, process_alive
from gridverify.grid.families import BALANCE
from gridverify.specs.certificate import VERDICTS, Certificate, ConstraintRecord

FIGURES = {
    "intervals_bus.png": "certified interval per bus (balance residuals |h| and voltage limits)",
    "intervals_branch.png": "certified interval per branch (thermal: loading in % of rate_a at both ends; "
    "angle differences)",
    "intervals_generator.png": "certified interval per generator (active and reactive limits)",
    "grid.png": "the grid: branches coloured by certified max loading, buses by max balance residual",
    "bound_vs_time.png": "certified bound over the search's time for the constraints whose bound moved",
}
LOCK = ".report.lock"
FINDING_ORDER = {"overload": 0, "voltage": 1, "q_limit": 2, "p_limit": 3}
FINDING_NAMES = {"overload": "overload", "voltage": "voltage", "q_limit": "Q limit", "p_limit": "P limit"}


class ReportLockedError(RuntimeError):
    """Another process is writing a report into the same folder."""


def write_report(
    cert: Certificate, folder: str | Path, case: Any | None = None, deadline: Deadline | None = None
) -> Path:
    """Write ``report.md`` and the figures into ``folder`` (stale figures of another run removed, under a
    lock); ``case`` (a `gridverify.surrogate.Case`) adds the grid drawing and the branch ratings. Figures not
    started by ``deadline`` (a command's ``--timeout``) are left out, and the report
    says which and how to draw them. Returns the path of ``report.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with report_lock(folder):
        from gridverify.reports import figures  # matplotlib: only when drawing

        paths, late = figures.draw_all(cert, folder, case, deadline)
        drawn = {p.name for p in paths}
        kept = {n for n in set(FIGURES) - drawn if _same_run(folder / n, folder / "certificate.json")}
        for name in set(FIGURES) - drawn - kept:
            (folder / name).unlink(missing_ok=True)
        path = folder / "report.md"
        text = render_markdown(cert, [n for n in FIGURES if n in drawn | kept])
        if late:
            text += (
                f"\nNot drawn within the command's time budget: {', '.join(late)} "
                f"(`gridverify report {folder / 'certificate.json'}` draws them).\n"
            )
        path.write_text(text)
    return path


def _same_run(figure: Path, certificate: Path) -> bool:
    """A figure this call did not draw belongs to the folder's run when it is newer than the folder's
    certificate (e.g. ``grid.png`` of `gridverify verify`, re-rendered by `gridverify report` without
    the case); an older one is a previous run's and is removed."""
    try:
        return figure.stat().st_mtime >= certificate.stat().st_mtime
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def report_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.report.lock`` while writing; a lock whose process is gone is taken over, and one this
    process holds already is reentered (a caller may hold it around the certificate and the report)."""
    lock = folder / LOCK
    if _lock_holder(lock) == os.getpid():
        yield
        return
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and process_alive(holder):
                raise ReportLockedError(f"{folder}: process {holder} is writing a report there") from None
            lock.unlink(missing_ok=True)
    else:
        raise ReportLockedError(f"{folder}: cannot take {LOCK}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


# -- report.md ---------------------------------------------------------------------------------------------
def render_markdown(cert: Certificate, figure_names: Sequence[str] = ()) -> str:
    lines = _header(cert)
    lines += _physical(cert)
    lines += _limit_violations(cert)
    lines += _self_consistency(cert)
    lines += _summary(cert)
    lines += _unknowns(cert)
    lines += _witness(cert)
    if figure_names:
        lines += ["", "## Figures", ""]
        lines += [f"- `{n}`: {FIGURES.get(n, '')}\n\n  ![{n}]({n})" for n in figure_names]
    return "\n".join(lines) + "\n"


def _header(cert: Certificate) -> list[str]:
    counts = cert.counts()
    findings = physical_findings(cert)
    confirmed = f"{len(findings)} physical limit(s) exceeded" if findings else "no physical limit exceeded"
    lines = [
        f"# gridverify report: {cert.case}",
        "",
        f"- surrogate: `{cert.surrogate[:16]}` (sha256 of weights and layout)",
        f"- region: {cert.region.get('label') or 'custom box'} ({len(cert.input_names) or '?'} load inputs)",
        f"- settings: {', '.join(f'{k}={v}' for k, v in cert.settings.items())}",
        f"- {len(cert.records)} constraints in {cert.seconds:.1f} s: "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICTS),
        f"- pandapower's power flow at the surrogate's set-points, at {_n_witnesses(cert)} witness load(s): "
        + confirmed,
    ]
    headline = balance_headline(cert)
    if headline:
        lines.append(f"- self-consistency: {headline}")
    lines += [
        f"- gridverify {cert.gridverify}, {cert.created}",
        "",
        "How to read: a constraint is *verified* when its certified bound (no load in the region does",
        "worse) is at most the tolerance, *violated* when a load in the region (re-checked in float64)",
        "exceeds the tolerance, *unknown* otherwise. Violations are in each family's unit: `g(x)` for",
        "`g <= 0` limits (thermal: `p^2 + q^2 - rate_a^2` in pu^2), `|h(x)|` for balance equations (pu on",
        "the case's base).",
    ]
    return lines


def _n_witnesses(cert: Certificate) -> int:
    return len({r.witness for r in cert.records if r.replay is not None})


def physical_findings(cert: Certificate) -> list[dict[str, Any]]:
    """Every limit exceeded in pandapower's state at any replayed witness, the worst per element and
    limit (largest excess), overloads first, then voltages, Q and P limits; each finding (see
    `gridverify.verify.replay.consequences`) gains ``witness_of``, the constraint whose witness it is."""
    worst: dict[tuple[str, str], dict[str, Any]] = {}
    for r in cert.records:
        for f in ((r.replay or {}).get("consequences") or {}).get("findings", ()):
            key, f = (f["what"], f["element"]), {**f, "witness_of": r.name}
            if key not in worst or _excess(f) > _excess(worst[key]):
                worst[key] = f
    return sorted(worst.values(), key=lambda f: (FINDING_ORDER.get(f["what"], 9), -_excess(f)))


def _excess(f: Mapping[str, Any]) -> float:
    """How far beyond its limit, relative to the limit's size (overloads: fraction of rate_a)."""
    value, limit = f["pandapower"] or 0.0, f["limit"] or 0.0
    return abs(value - limit) / max(abs(limit), 1.0)


def _physical(cert: Certificate) -> list[str]:
    if _n_witnesses(cert) == 0:
        return []
    lines = [
        "",
        "## Physical violations after pandapower's power flow",
        "",
        "At each witness load (a load where some constraint is violated), pandapower's power flow",
        "(`runpp`) with the surrogate's set-points: pg and vm of the PV generators, vm and angle of the",
        "slack. The slack then takes up whatever the surrogate's dispatch leaves unbalanced, and voltages,",
        "reactive power and flows follow the physics. Branch loading is apparent power (MVA, from",
        "pandapower's flows, each end) against the case's own `rate_a`; reactive limits of units sharing a",
        "bus are checked together.",
        "",
    ]
    findings = physical_findings(cert)
    if not findings:
        lines.append("No limit is exceeded in pandapower's state at any witness.")
    else:
        lines += [
            "| finding | element | pandapower | limit | % of rate_a | surrogate predicted "
            "| at the witness of |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {FINDING_NAMES.get(f['what'], f['what'])} | {f['element']} | {_num(f['pandapower'])} "
            f"{f['unit']} | {_num(f['limit'])} {f['unit']} | {_pct(f.get('percent'))} "
            f"| {_num(f['surrogate'])} {f['unit']} | {f['witness_of']} |"
            for f in findings
        ]
    return lines + _slack_table(cert)


def _slack_table(cert: Certificate) -> list[str]:
    rows: dict[tuple[float, ...] | None, tuple[str, Mapping[str, Any]]] = {}
    for r in cert.records:
        for s in ((r.replay or {}).get("consequences") or {}).get("slack", ()):
            rows.setdefault(r.witness, (r.name, s))
    if not rows:
        return []
    ranked = sorted(rows.values(), key=lambda x: -abs((x[1]["p_mw"] or 0) - (x[1]["p_mw_surrogate"] or 0)))
    lines = [
        "",
        "The slack's power after the power flow against the surrogate's prediction (largest P gaps first):",
        "",
        "| at the witness of | slack | P pandapower | P surrogate | Q pandapower | Q surrogate |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {s['element']} | {_num(s['p_mw'])} MW | {_num(s['p_mw_surrogate'])} MW "
        f"| {_num(s['q_mvar'])} MVAr | {_num(s['q_mvar_surrogate'])} MVAr |"
        for name, s in ranked[:10]
    ]
    if len(ranked) > 10:
        lines.append(f"| ... {len(ranked) - 10} more witnesses | | | | | |")
    return lines


def _limit_violations(cert: Certificate) -> list[str]:
    limits = [r for r in cert.worst_violations(len(cert.records)) if r.family not in BALANCE]
    if not limits:
        return ["", "## Limit constraints", "", "No limit constraint is violated by the surrogate's output."]
    lines = [
        "",
        "## Limit constraints violated by the surrogate's output",
        "",
        "gridverify: the violation at the witness under the surrogate's output; pandapower: the same",
        "constraint in pandapower's solved state (confirmed: pandapower's state violates it too).",
        "",
        "| constraint | worst found | certified bound | pandapower | confirmed | pandapower's state |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in limits[:30]:
        rp = r.replay or {}
        state = _state(rp.get("results") or {})
        lines.append(
            f"| {r.name} | {_num(r.worst)} {r.unit} | {_num(r.bound)} {r.unit} "
            f"| {_num(rp.get('pandapower'))} | {_yes(rp.get('confirmed'))} | {state} |"
        )
    if len(limits) > 30:
        lines.append(f"| ... {len(limits) - 30} more | | | | | |")
    return lines


def _state(results: Mapping[str, float]) -> str:
    """A branch's MVA at both ends against rate_a, else pandapower's result columns."""
    if "s_from_mva" in results:
        rate = results.get("rate_a_mva")
        ends = [f"{end} {results[f's_{end}_mva']:.1f} MVA" for end in ("from", "to")]
        if rate:
            ends = [
                f"{e} ({100 * results[f's_{end}_mva'] / rate:.1f} %)" for e, end in zip(ends, ("from", "to"))
            ]
        return ", ".join(ends) + (f" of rate_a {rate:.1f} MVA" if rate else "")
    return ", ".join(f"{k.split('.')[-1]}={v:.4g}" for k, v in results.items())


def balance_headline(cert: Certificate) -> str | None:
    """ "the dispatch is within A-B pu of a power-flow solution everywhere in the region", from the balance
    rows: A the largest residual found at a load, B the largest certified bound (None without them)."""
    recs = [r for r in cert.records if r.family in BALANCE]
    if not recs:
        return None
    found, bound = max(r.worst for r in recs), max(r.bound for r in recs)
    undecided = " (some rows undecided: the upper end is their certified bound)" if any(
        r.verdict == "unknown" for r in recs) else ""  # fmt: skip
    return (
        f"the dispatch is within {_num(found)}-{_num(bound)} pu of a power-flow solution everywhere in the "
        f"region (largest bus balance residual |h|: {_num(found)} pu found at a load, at most {_num(bound)} "
        f"pu certified){undecided}"
    )


def _self_consistency(cert: Certificate) -> list[str]:
    headline = balance_headline(cert)
    if headline is None:
        return []
    recs = sorted((r for r in cert.records if r.family in BALANCE), key=lambda r: r.bound, reverse=True)
    lines = [
        "",
        "## Self-consistency of the surrogate: power balance",
        "",
        f"**{headline[0].upper() + headline[1:]}.**",
        "",
        "A surrogate never balances power exactly; the certified interval says how far its dispatch can",
        "be from a power-flow solution. pandapower's power flow balances by construction, so it never",
        "confirms a balance residual: the residual shows up instead as the slack's and the generators'",
        "deviations and the limits they exceed (above). Per family:",
        "",
        "| family | rows | worst found | certified bound | verdicts at the tolerance |",
        "|---|---:|---:|---:|---|",
    ]
    for fam in BALANCE:
        rows = [r for r in recs if r.family == fam]
        if rows:
            verdicts = ", ".join(f"{sum(r.verdict == v for r in rows)} {v}" for v in VERDICTS)
            lines.append(
                f"| {fam} | {len(rows)} | {_num(max(r.worst for r in rows))} pu "
                f"| {_num(max(r.bound for r in rows))} pu | {verdicts} (tolerance {rows[0].tolerance:g}) |"
            )
    lines += ["", "Largest certified bounds:", "", "| constraint | worst found | certified bound |"]
    lines.append("|---|---:|---:|")
    lines += [f"| {r.name} | {_num(r.worst)} | {_num(r.bound)} |" for r in recs[:10]]
    return lines


def _summary(cert: Certificate) -> list[str]:
    lines = [
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
    return lines


def _unknowns(cert: Certificate) -> list[str]:
    rest = sorted((r for r in cert.records if r.verdict == "unknown"), key=lambda r: r.bound, reverse=True)
    if not rest:
        return []
    lines = [
        "",
        "## Undecided (certified interval only)",
        "",
        "No load found violates these, and the certified bound does not exclude it. A larger `--timeout`",
        "narrows the bounds slowly when the surrogate's relu neurons straddle 0 over the region (see",
        "`unstable_relus` in its `metrics.json`); a surrogate trained with `gridverify train --stability",
        "0.001` keeps them stable and is usually decided (README, `bench/stability.py`).",
        "",
        "| constraint | worst found | certified bound |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.name} | {_num(r.worst)} | {_num(r.bound)} |" for r in rest[:20]]
    if len(rest) > 20:
        lines.append(f"| ... {len(rest) - 20} more | | |")
    return lines


def _witness(cert: Certificate) -> list[str]:
    """The load of the first physical finding, else of the worst violation."""
    findings = physical_findings(cert)
    by_name = {r.name: r for r in cert.records}
    worst = [by_name[findings[0]["witness_of"]]] if findings else list(cert.worst_violations(1))
    if not worst or worst[0].witness is None:
        return []
    r: ConstraintRecord = worst[0]
    x = np.asarray(r.witness)
    names = cert.input_names or tuple(f"x_{i}" for i in range(len(x)))
    lines = ["", f"## Witness load of {r.name}", "", "| input | value (pu) |", "|---|---:|"]
    lines += [f"| {n} | {v:.6f} |" for n, v in zip(names, x)]
    return lines


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{float(v):.4g}"


def _pct(v: Any) -> str:
    return "" if v is None else f"{float(v):.1f} %"


def _yes(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")
