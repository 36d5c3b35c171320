"""The VNN-COMP runner: result files for unsat, sat (witness checked in onnxruntime) and error."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from gridverify.cli import main
from gridverify.vnncomp import SETTINGS, verify_instance
from tests.ir.onnx_models import make_model

SPEC = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 1.0))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert (>= Y_0 {threshold}))
"""


def _model(tmp_path: Path) -> Path:
    """y = sin(x0) * x1 + 0.5 x0 (max on [0,1]^2 is sin(1) + 0.5 at (1, 1))."""
    nodes = [
        helper.make_node("Gather", ["x", "i0"], ["x0"], axis=1),
        helper.make_node("Gather", ["x", "i1"], ["x1"], axis=1),
        helper.make_node("Sin", ["x0"], ["s"]),
        helper.make_node("Mul", ["s", "x1"], ["p"]),
        helper.make_node("Mul", ["x0", "half"], ["h"]),
        helper.make_node("Add", ["p", "h"], ["y"]),
    ]
    consts = {"i0": np.array([0]), "i1": np.array([1]), "half": np.array(0.5)}
    path = tmp_path / "model.onnx"
    onnx.save(make_model(nodes, [1, 2], consts, opset=17), path)
    return path


def _spec(tmp_path: Path, threshold: float) -> Path:
    path = tmp_path / "prop.vnnlib"
    path.write_text(SPEC.format(threshold=threshold))
    return path


def test_true_property_is_unsat(tmp_path: Path) -> None:
    r = verify_instance(_model(tmp_path), _spec(tmp_path, np.sin(1.0) + 0.5 + 1e-3), timeout_s=20)
    assert r.status == "unsat" and r.text() == "unsat\n"


def test_false_property_is_sat_with_a_checked_witness(tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    code = main(
        ["vnnlib", str(_model(tmp_path)), str(_spec(tmp_path, 1.2)), "--timeout", "20", "--out", str(out)]
    )
    lines = out.read_text().splitlines()
    assert code == 0 and lines[0] == "sat"
    values = dict(line.strip(" ()").split() for line in lines[1:])
    x0, x1, y0 = float(values["X_0"]), float(values["X_1"]), float(values["Y_0"])
    assert 0 <= x0 <= 1 and 0 <= x1 <= 1 and y0 >= 1.2
    assert y0 == pytest.approx(np.sin(x0) * x1 + 0.5 * x0, abs=1e-12)


def test_garbage_model_gives_error_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    out = tmp_path / "result.txt"
    assert main(["vnnlib", str(bad), str(_spec(tmp_path, 1.0)), "--out", str(out)]) == 1
    assert out.read_text() == "error\n"


def test_ml4acopf_14_bus_prop1_is_unsat(ml4acopf: Path) -> None:
    r = verify_instance(
        ml4acopf / "onnx" / "14_ieee_ml4acopf.onnx", ml4acopf / "vnnlib" / "14_ieee_prop1.vnnlib", 60
    )
    assert r.status == "unsat"


@pytest.mark.slow
def test_ml4acopf_118_bus_prop2_needs_and_gets_tightening(ml4acopf: Path) -> None:
    """The thermal row of branch 101 (loads +-10 %): undecided by the plain search, unsat once the MLP
    outputs its bound hinges on are tightened (about 25 s here)."""
    model, prop = ml4acopf / "onnx" / "118_ieee_ml4acopf.onnx", ml4acopf / "vnnlib" / "118_ieee_prop2.vnnlib"
    assert verify_instance(model, prop, 20, replace(SETTINGS, tighten=None)).status in ("unknown", "timeout")
    assert verify_instance(model, prop, 120).status == "unsat"


IDENTITY_SPEC = """
(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 {lo}))
(assert (<= X_0 {hi}))
(assert (>= Y_0 {threshold}))
"""


def _one_input(tmp_path: Path, op: str, lo: float, hi: float, threshold: float) -> tuple[Path, Path]:
    """y = op(x) on one input, and the property ``x in [lo, hi]``, unsafe ``y >= threshold``."""
    model, prop = tmp_path / f"{op}.onnx", tmp_path / f"{op}.vnnlib"
    onnx.save(make_model([helper.make_node(op, ["x"], ["y"])], [1, 1], {}, opset=17), model)
    prop.write_text(IDENTITY_SPEC.format(lo=lo, hi=hi, threshold=threshold))
    return model, prop


def test_boundary_of_a_closed_unsafe_set_is_sat(tmp_path: Path) -> None:
    """y = x on [0, 1] with unsafe y >= 1: x = 1 is a counterexample (a bound equal to the threshold
    proves nothing)."""
    r = verify_instance(*_one_input(tmp_path, "Identity", 0.0, 1.0, 1.0), timeout_s=20)
    assert r.status == "sat" and r.witness_x is not None and r.witness_x.tolist() == [1.0]


def test_relu_fixed_at_zero_meets_an_unsafe_set_at_zero(tmp_path: Path) -> None:
    r = verify_instance(*_one_input(tmp_path, "Relu", -2.0, -1.0, 0.0), timeout_s=20)
    assert r.status == "sat" and r.witness_y is not None and r.witness_y.tolist() == [0.0]


def test_just_above_the_maximum_is_unsat(tmp_path: Path) -> None:
    assert (
        verify_instance(*_one_input(tmp_path, "Identity", 0.0, 1.0, 1.0 + 1e-9), timeout_s=20).status
        == "unsat"
    )


def test_the_falsifier_from_crown_corners_stops_at_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a long timeout, the falsifier started from the CROWN lines' corners (the second falsifier call)
    gets at most `CORNERS_S`, not 10% of the time left; the instance is still decided."""
    import gridverify.vnncomp as runner

    given: list[float] = []
    real = runner._falsify

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        given.append(args[-1].remaining_s())
        return real(*args, **kwargs)

    real_crown = runner.crown

    def unproved(*args, **kwargs):  # type: ignore[no-untyped-def]
        """The runner's CROWN stage proves nothing here (its bounds made +inf), so the corners stage runs."""
        b = real_crown(*args, **kwargs)
        return replace(b, upper=torch.full_like(b.upper, float("inf")))

    monkeypatch.setattr(runner, "_falsify", spy)
    monkeypatch.setattr(runner, "crown", unproved)
    r = verify_instance(_model(tmp_path), _spec(tmp_path, np.sin(1.0) + 0.5 + 1e-3), timeout_s=1000)
    assert r.status == "unsat" and len(given) >= 2
    assert given[1] <= runner.CORNERS_S + 1e-6 < 0.1 * 900


def test_no_sat_without_onnxruntime_confirming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When onnxruntime disagrees with the float64 graph (here: it is made to), the answer is not sat."""
    import gridverify.vnncomp as runner

    monkeypatch.setattr(runner, "_onnx_outputs", lambda model, x: np.array([-1.0]))
    r = verify_instance(*_one_input(tmp_path, "Identity", 0.0, 1.0, 0.5), timeout_s=3)
    assert r.status in ("unknown", "timeout")


def test_ml4acopf_300_bus_prop2_counterexample_in_seconds(ml4acopf: Path) -> None:
    """Published sat (the reference finds it in 4.9 s on this CPU): found by the falsifier before any
    bound, and confirmed in onnxruntime."""
    model, prop = ml4acopf / "onnx" / "300_ieee_ml4acopf.onnx", ml4acopf / "vnnlib" / "300_ieee_prop2.vnnlib"
    r = verify_instance(model, prop, 30)
    assert r.status == "sat" and r.seconds < 10
    assert r.witness_y is not None and r.witness_y[2382] >= 0.99


def test_property_without_output_constraint_is_sat_with_a_witness(tmp_path: Path) -> None:
    """No output assertion: every input of the box is a counterexample; the answer carries one."""
    model, prop = _one_input(tmp_path, "Identity", 0.0, 1.0, 0.0)
    prop.write_text(
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n"
    )
    r = verify_instance(model, prop, timeout_s=10)
    assert r.status == "sat" and r.witness_x is not None and 0.0 <= r.witness_x[0] <= 1.0
