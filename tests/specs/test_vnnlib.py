"""The VNN-LIB reader: every shared ml4acopf property (sizes agree with its ONNX model), small specs with
exact expected matrices, and malformed files with the expected message and line."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import onnx
import pytest

from gridverify.specs import VnnlibError, parse_vnnlib, read_vnnlib

HEADER = """; two inputs, three outputs
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
"""
BOX = "(assert (<= X_0 0.5))\n(assert (>= X_0 -0.5))\n(assert (and (<= -1 X_1) (>= 2e0 X_1)))\n"


def _io_sizes(model_path: Path) -> tuple[int, int]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    sizes = [
        int(np.prod([d.dim_value for d in v.type.tensor_type.shape.dim]))
        for v in (graph.input[0], graph.output[0])
    ]
    return sizes[0], sizes[1]


def test_every_shared_property_fits_its_model(ml4acopf: Path) -> None:
    with open(ml4acopf / "instances.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 23
    sizes = {name: _io_sizes(ml4acopf / name) for name in {r[0] for r in rows}}
    for onnx_name, vnnlib_name, _ in rows:
        spec = read_vnnlib(ml4acopf / vnnlib_name)
        spec.check_sizes(*sizes[onnx_name])
        assert np.all(spec.input_lower <= spec.input_upper), vnnlib_name
        assert spec.disjuncts and all(d.a.shape == (1, spec.n_outputs) for d in spec.disjuncts), vnnlib_name


def test_a_shared_thermal_property_exactly(ml4acopf: Path) -> None:
    """14_ieee_prop2 asserts ``Y_130 >= 0.0201`` after 22 two-sided input bounds."""
    spec = read_vnnlib(ml4acopf / "vnnlib" / "14_ieee_prop2.vnnlib")
    (d,) = spec.disjuncts
    assert d.a[0, 130] == -1 and np.count_nonzero(d.a) == 1 and d.b.tolist() == [-0.0201]
    assert (spec.input_lower[0], spec.input_upper[0]) == (0.195490737, 0.238933123)


def test_hand_written_spec_exact_matrices() -> None:
    text = (
        HEADER
        + BOX
        + """(assert (<= X_1 3)) ; looser, ignored
(assert (or
  (and (<= Y_0 Y_1) (>= Y_2 1.5))
  (and (<= (+ Y_0 (* 2 Y_1)) (- 3)))))
"""
    )
    spec = parse_vnnlib(text)
    assert spec.input_lower.tolist() == [-0.5, -1.0] and spec.input_upper.tolist() == [0.5, 2.0]
    assert (spec.n_inputs, spec.n_outputs) == (2, 3)
    first, second = spec.disjuncts
    assert first.a.tolist() == [[1, -1, 0], [0, 0, -1]] and first.b.tolist() == [0, -1.5]
    assert second.a.tolist() == [[1, 2, 0]] and second.b.tolist() == [-3]
    assert spec.is_unsafe(np.array([[0, 0, 2], [0, 0, 1], [-3, 0, 0], [1, 1, 0]])).tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert spec.in_box(np.array([[0.5, 2.0], [0.6, 0.0]])).tolist() == [True, False]


def test_output_asserts_are_conjoined_into_dnf() -> None:
    text = (
        HEADER + BOX + "(assert (or (<= Y_0 0) (< Y_1 0)))\n(assert (>= Y_2 1))\n(assert (= (- Y_0 Y_2) 4))\n"
    )
    spec = parse_vnnlib(text)
    assert len(spec.disjuncts) == 2
    for d, row in zip(spec.disjuncts, ([1, 0, 0], [0, 1, 0])):
        assert d.a.tolist() == [row, [0, 0, -1], [1, 0, -1], [-1, 0, 1]]
        assert d.b.tolist() == [0, -1, 4, -4]


def test_without_output_asserts_every_output_is_unsafe() -> None:
    spec = parse_vnnlib(HEADER + BOX)
    (d,) = spec.disjuncts
    assert d.a.shape == (0, 3) and spec.is_unsafe(np.zeros((2, 3))).tolist() == [True, True]


def test_gzip_and_arrays_are_read_only(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib.gz"
    path.write_bytes(gzip.compress((HEADER + BOX + "(assert (>= Y_1 0))").encode()))
    spec = read_vnnlib(path)
    assert spec.disjuncts[0].a.tolist() == [[0, -1, 0]]
    with pytest.raises(ValueError, match="read-only"):
        spec.input_lower[0] = 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "(assert (<= X_0 1)", r":7: '\(' opened here is never closed"),
        (HEADER + "(assert (<= X_0 1)))", r":7: unexpected '\)'"),
        (HEADER + "X_0", r":7: 'X_0' outside parentheses"),
        (HEADER + BOX + "(assert (>= X_2 0))", r":10: X_2 is used but never declared"),
        (HEADER + "(declare-const Y_1 Real)", r":7: Y_1 declared again \(first on line 5\)"),
        ("(declare-const X_0 Int)", r":1: expected \(declare-const X_i Real\)"),
        ("(declare-const input Real)", r":1: expected \(declare-const X_i Real\)"),
        (
            HEADER + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))",
            r":3: input X_1 has no lower bound",
        ),
        (HEADER + BOX + "(assert (>= X_0 0.7))", r":10: the input box is empty: X_0 >= 0.7 \(line 10\)"),
        (HEADER + BOX + "(assert (or (<= X_0 0) (>= X_0 0.1)))", r":10: a disjunction over inputs"),
        (HEADER + BOX + "(assert (<= X_0 Y_0))", r":10: a constraint mixing inputs X and outputs Y"),
        (HEADER + BOX + "(assert (<= (+ X_0 X_1) 1))", r":10: an input constraint must bound one input"),
        (HEADER + BOX + "(assert (<= (* Y_0 Y_1) 1))", r":10: a product of variables is not linear"),
        (
            HEADER + BOX + "(assert (<= Y_0 0.5.3))",
            r":10: '0.5.3' is neither a declared variable nor a number",
        ),
        (HEADER + BOX + "(assert (=> Y_0 1))", r":10: expected \(and ..\), \(or ..\) or a comparison"),
        (HEADER + BOX + "(assert (<= (exp Y_0) 1))", r":10: expected a linear term, got \(exp Y_0\)"),
        (HEADER + BOX + "(assert Y_0)", r":10: expected a formula, got 'Y_0'"),
        (HEADER + BOX + "(define-fun f () Real 1)", r":10: expected \(declare-const ..\) or \(assert ..\)"),
        ("(declare-const X_0 Real)\n(declare-const X_2 Real)", r": X_1 is not declared, but X_2 is"),
    ],
    ids=lambda v: v if len(v) < 30 else None,
)
def test_malformed_specs_name_the_line(text: str, message: str) -> None:
    with pytest.raises(VnnlibError, match="^prop.vnnlib" + message):
        parse_vnnlib(text, "prop.vnnlib")


def test_unreadable_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.vnnlib.gz"
    corrupt.write_bytes(gzip.compress(b"(declare-const X_0 Real)")[:12])
    with pytest.raises(VnnlibError, match="corrupt gzip data"):
        read_vnnlib(corrupt)
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(b"\xff\xfe\x00(")
    with pytest.raises(VnnlibError, match="not a text file"):
        read_vnnlib(binary)


def test_size_mismatch_is_reported() -> None:
    with pytest.raises(
        VnnlibError, match="declares 2 inputs and 3 outputs, the model has 4 inputs and 3 outputs"
    ):
        parse_vnnlib(HEADER + BOX).check_sizes(4, 3)
