"""`verify` on the shipped case14 surrogate: every answer checked against sampling and against pandapower.

Budgets are tiny (seconds): the checks are about soundness and bookkeeping, not about deciding everything.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from gridverify.surrogate import compose
from gridverify.surrogate.case import load_case
from gridverify.verify import VerifyConfig, verify
from gridverify.verify.replay import power_flow
from gridverify.verify.run import select_constraints

FAMILIES = ("p_balance", "thermal_from", "vm_max", "pg_min")


@pytest.fixture(scope="module")
def case14():
    return load_case("case14")


@pytest.fixture(scope="module")
def cert14(case14):
    return verify(case14, families=FAMILIES, config=VerifyConfig(timeout_s=12.0, replay=True))


def _violations(case, loads: np.ndarray, families) -> np.ndarray:
    """(S, C) violation of every selected constraint at sampled loads, from the composed graph."""
    graph = compose(case.problem, case.surrogate)
    out = graph.forward(torch.tensor(loads, dtype=torch.float64))
    cols = []
    for c in select_constraints(case, families):
        k = [x.name for x in case.problem.family(c.family)].index(c.name)
        v = out[c.family][:, k].numpy()
        cols.append(np.abs(v) if c.kind.value == "equality" else v)
    return np.stack(cols, 1)


def test_every_constraint_answered_and_bounds_hold_on_samples(case14, cert14):
    constraints = select_constraints(case14, FAMILIES)
    assert [r.name for r in cert14.records] == [c.name for c in constraints]
    rng = np.random.default_rng(0)
    loads = case14.region.sample(3000, rng)
    sampled = _violations(case14, loads, FAMILIES).max(0)
    for r, s in zip(cert14.records, sampled):
        assert r.verdict in ("verified", "violated", "unknown")
        assert r.worst <= r.bound, r.name
        assert s <= r.bound + 1e-9, (r.name, s, r.bound)  # certified bound above every sample
        if r.verdict == "verified":
            assert r.bound <= r.tolerance
    # the squashed outputs keep generator and voltage limits by construction: proved, not sampled
    assert all(r.verdict == "verified" for r in cert14.records if r.family in ("vm_max", "pg_min"))


def test_violations_have_witnesses_inside_the_region_rechecked_in_float64(case14, cert14):
    bad = [r for r in cert14.records if r.verdict == "violated"]
    assert bad, "the case14 surrogate is not exact: some balance residual exceeds 1e-4 pu"
    witnesses = np.array([r.witness for r in bad])
    assert case14.region.contains(witnesses).all()
    values = _violations(case14, witnesses, FAMILIES)
    names = [r.name for r in cert14.records]
    for i, r in enumerate(bad):
        v = values[i, names.index(r.name)]
        assert v > r.tolerance and v == pytest.approx(r.worst, rel=1e-9, abs=1e-12)


def test_replay_runs_pandapower_at_the_witness(case14, cert14):
    r = next(r for r in cert14.records if r.verdict == "violated" and r.family == "p_balance")
    assert r.replay is not None and r.replay["converged"]
    # pandapower's solved state balances power: its residual is ~0 where the surrogate's is not
    assert abs(r.replay["pandapower"]) < 1e-6 < r.replay["gridverify"]
    assert not r.replay["confirmed"]
    assert "res_bus.vm_pu" in r.replay["results"]


def test_pandapower_confirms_a_thermal_counterexample(case14, tmp_path):
    """A line rated below its flow: gridverify finds the overload and pandapower's own loading agrees."""
    folder = tmp_path / "case14_tight"
    shutil.copytree(case14.folder, folder)
    m = folder / case14.definition.source
    text = m.read_text()
    rows = re.search(r"mpc\.branch = \[\n(.*?)\n\];", text, re.S)
    first = rows.group(1).splitlines()[0]
    cols = first.split()
    cols[5] = "60.0"  # rate_a of branch 1 (bus 1 - bus 2, ~150 MW at nominal) in MVA
    m.write_text(text.replace(first, "\t" + "\t".join(cols), 1))
    tight = load_case(folder)
    cert = verify(tight, families=("thermal_from",), config=VerifyConfig(timeout_s=6.0))
    r = next(r for r in cert.records if r.element == ("branch", 1))
    assert r.verdict == "violated"
    assert r.replay["converged"] and r.replay["confirmed"]
    assert r.replay["results"]["res_line.loading_percent"] > 100.0
    flow = power_flow(tight, np.array(r.witness))
    assert flow.pandapower["thermal_from"][0] > 0.0


def test_float32_is_refused_for_certification() -> None:
    with pytest.raises(ValueError, match="float64 only"):
        VerifyConfig(dtype=torch.float32)


def test_replay_runs_no_power_flow_past_its_deadline() -> None:
    from gridverify.deadline import Deadline
    from gridverify.verify.replay import replay_records

    case = load_case("case14")
    cert = verify(case, None, ["p_balance", "q_balance"], VerifyConfig(timeout_s=6.0, replay=False))
    violated = [r for r in cert.records if r.verdict == "violated"]
    assert violated and all(r.replay is None for r in cert.records)
    late = replay_records(case, cert.records, deadline=Deadline.after(-1.0))
    assert all(r.replay is None for r in late)  # past the deadline: no power flow at all
    done = replay_records(case, cert.records)
    assert all((r.replay is not None) == (r.verdict == "violated") for r in done)
