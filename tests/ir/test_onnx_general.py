"""ONNX ops of general networks (convolutions, batch norm, upsampling, leaky relu): single-node and small
models equal onnxruntime in float64, batch norm folds into the preceding conv, CROWN bounds contain sampled
outputs. The VNN-COMP 2023 general sets (vit_2023, dist_shift_2023, cgan_2023, from ``../shared/data``;
skipped when absent) load and match onnxruntime on random inputs."""

from __future__ import annotations

import gzip

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx.reference import ReferenceEvaluator

from gridverify.bounds import crown
from gridverify.ir.from_onnx import from_onnx
from tests.conftest import SHARED_DATA
from tests.ir.onnx_models import make_model, run_onnxruntime, single_node_model

RNG = np.random.default_rng(7)
W_CONV = RNG.normal(size=(4, 2, 3, 3))
W_CONVT = RNG.normal(size=(2, 3, 4, 4))


def _assert_matches(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    """Against ONNX's reference implementation in float64 (onnxruntime has no float64 convolutions)."""
    x = np.random.default_rng(1).normal(size=shape)
    got = from_onnx(model).forward(torch.from_numpy(x))
    want = ReferenceEvaluator(model).run(None, {"x": x})
    for out, w in zip(model.graph.output, want):
        assert np.allclose(got[out.name].numpy(), w, rtol=1e-12, atol=1e-12), out.name


CASES = [
    pytest.param("Conv", ["x", "w", "b"], {"w": W_CONV, "b": np.arange(4.0)}, {"pads": [1] * 4}, id="conv"),
    pytest.param("Conv", ["x", "w"], {"w": W_CONV}, {"strides": [2, 1], "dilations": [1, 2]}, id="conv_step"),
    pytest.param("Conv", ["x", "w"], {"w": W_CONV[:, :1]}, {"group": 2, "auto_pad": "VALID"}, id="group"),
    pytest.param(
        "ConvTranspose", ["x", "w", "b"], {"w": W_CONVT, "b": np.array([1.0, -1, 2])},
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]}, id="convT",
    ),
    pytest.param("ConvTranspose", ["x", "w"], {"w": W_CONVT[:, :, :3, :2]}, {}, id="convT_plain"),
    pytest.param(
        "BatchNormalization", ["x", "s", "b", "m", "v"],
        {"s": np.array([2, -1.0]), "b": np.array([0.5, 0]),
         "m": np.array([1, -3.0]), "v": np.array([4, 0.1])},
        {"epsilon": 0.01}, id="batchnorm",
    ),
    pytest.param("LeakyRelu", ["x"], {}, {"alpha": 0.2}, id="leaky"),
    pytest.param("LeakyRelu", ["x"], {}, {}, id="leaky_default"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "inputs", "consts", "attrs"), CASES)
def test_single_node_matches_onnxruntime(op: str, inputs: list[str], consts: dict, attrs: dict) -> None:
    model = single_node_model(op, ("N", 2, 5, 6), consts, inputs, 17, **attrs)
    _assert_matches(model, (3, 2, 5, 6))


def test_upsample_opset9_is_a_gather() -> None:
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
    model = make_model([node], ("N", 2, 3, 2), {"s": np.array([1.0, 1.0, 2.0, 3.0], dtype=np.float32)}, 9)
    graph = from_onnx(model)
    assert [n.op for n in graph.nodes] == ["input", "gather"]
    x = torch.arange(12.0, dtype=torch.float64).reshape(1, 2, 3, 2)
    want = x.repeat_interleave(2, dim=2).repeat_interleave(3, dim=3)
    assert torch.equal(graph.forward(x)["y"], want)


def _conv_bn_relu(bias: bool) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"] if bias else ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["n"], ["r"], alpha=0.1),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"], transB=1),
    ]
    consts = {
        "w": W_CONV,
        "cb": np.array([0.1, 0.2, -0.3, 0.0]),
        "s": np.array([1.0, -2, 0.5, 3]),
        "b": np.array([0.0, 1, -1, 0.5]),
        "m": np.array([0.2, -0.1, 0.0, 1]),
        "v": np.array([1.0, 2, 0.5, 0.25]),
        "g": RNG.normal(size=(3, 4 * 5 * 6)),
    }
    return make_model(nodes, ("N", 2, 5, 6), consts, 17)


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_folds_into_the_conv(bias: bool) -> None:
    model = _conv_bn_relu(bias)
    graph = from_onnx(model)
    assert [n.op for n in graph.nodes] == ["input", "conv", "leaky_relu", "reshape", "linear"]
    _assert_matches(model, (4, 2, 5, 6))


def test_crown_bounds_a_conv_network() -> None:
    graph = from_onnx(_conv_bn_relu(True))
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 2, 5, 6)))
    result = crown(graph, (x - 0.1, x + 0.1))
    samples = graph.forward(x - 0.1 + 0.2 * torch.rand(2000, 2, 5, 6, dtype=torch.float64))["y"]
    corners = graph.forward(torch.cat([x - 0.1, x + 0.1]))["y"]
    for y in (samples, corners):
        assert bool(((y >= result.lower) & (y <= result.upper)).all())


def _convT_sigmoid() -> onnx.ModelProto:
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "sb", "m", "v"], ["n"]),
        helper.make_node("Sigmoid", ["n"], ["r"]),
        helper.make_node("Conv", ["r", "k"], ["y"], strides=[2, 2]),
    ]
    consts = {
        "w": W_CONVT,
        "b": np.array([0.1, 0.0, -0.2]),
        "s": np.array([1.5, -1.0, 0.5]),
        "sb": np.zeros(3),
        "m": np.array([0.0, 0.1, -0.1]),
        "v": np.array([1.0, 4.0, 0.25]),
        "k": RNG.normal(size=(2, 3, 3, 3)),
    }
    return make_model(nodes, ("N", 2, 3, 3), consts, 17)


def test_crown_bounds_a_transposed_conv_network() -> None:
    model = _convT_sigmoid()
    graph = from_onnx(model)
    assert [n.op for n in graph.nodes] == ["input", "conv_transpose", "sigmoid", "conv"]
    _assert_matches(model, (3, 2, 3, 3))
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(1, 2, 3, 3)))
    result = crown(graph, (x - 0.2, x + 0.2))
    samples = graph.forward(x - 0.2 + 0.4 * torch.rand(2000, 2, 3, 3, dtype=torch.float64))["y"]
    flat = samples.reshape(2000, -1)
    assert bool(((flat >= result.lower) & (flat <= result.upper)).all())


# -- the shared VNN-COMP 2023 sets ---------------------------------------------------------------------------
GENERAL = SHARED_DATA / "vnncomp2023_general"
MODELS = [
    "vit_2023/onnx/ibp_3_3_8",
    "vit_2023/onnx/pgd_2_3_16",
    "dist_shift_2023/onnx/mnist_concat",
    "cgan_2023/onnx/cGAN_imgSz32_nCh_1",
    "cgan_2023/onnx/cGAN_imgSz32_nCh_1_transposedConvPadding_1",
    "cgan_2023/onnx/cGAN_imgSz32_nCh_3",
    "cgan_2023/onnx/cGAN_imgSz32_nCh_3_nonlinear_activations",
    "cgan_2023/onnx/cGAN_imgSz32_nCh_3_upsample",
    "cgan_2023/onnx/cGAN_imgSz64_nCh_1",
    "cgan_2023/onnx/cGAN_imgSz64_nCh_3",
]


@pytest.mark.parametrize("name", MODELS)
def test_shared_models_load_and_match_onnxruntime(name: str) -> None:
    path = GENERAL / f"{name}.onnx.gz"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    with gzip.open(path) as f:
        model = onnx.load_from_string(f.read())
    graph = from_onnx(model)
    inits = {t.name for t in model.graph.initializer}
    feeds = {
        v.name: np.random.default_rng(0).random([d.dim_value or 1 for d in v.type.tensor_type.shape.dim])
        for v in model.graph.input
        if v.name not in inits
    }
    got = graph.forward({k: torch.from_numpy(v) for k, v in feeds.items()})
    feeds32 = {k: v.astype(np.float32) for k, v in feeds.items()}
    (want,) = run_onnxruntime(model, feeds32, per_sample=False)  # float32: no float64 convolutions
    out = model.graph.output[0].name
    assert np.allclose(got[out].numpy().reshape(-1), want.reshape(-1), rtol=1e-4, atol=1e-4)


def _bn_after(first: list, consts: dict, shape: tuple) -> onnx.ModelProto:
    bn = helper.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["y"], epsilon=0.5)
    stats = {
        "s": np.array([2.0, -1]),
        "b": np.array([0.5, 0]),
        "m": np.array([1.0, -3]),
        "v": np.array([4, 0.1]),
    }
    return make_model([*first, bn], shape, {**consts, **stats}, 17)


def test_batchnorm_after_relu_is_a_depthwise_conv() -> None:
    model = _bn_after([helper.make_node("Relu", ["x"], ["h"])], {}, ("N", 2, 3, 4))
    assert [n.op for n in from_onnx(model).nodes] == ["input", "relu", "conv"]
    _assert_matches(model, (3, 2, 3, 4))


def test_batchnorm_folds_through_a_reshape_of_a_linear_map() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "g"], ["l"]),
        helper.make_node("Reshape", ["l", "shape"], ["h"]),
    ]
    consts = {"g": RNG.normal(size=(3, 8)), "shape": np.array([-1, 2, 2, 2])}
    model = _bn_after(nodes, consts, ("N", 3))
    assert [n.op for n in from_onnx(model).nodes] == ["input", "linear", "reshape"]
    _assert_matches(model, (4, 3))


class _AttentionLeaky(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
        self.act = torch.nn.LeakyReLU(0.2)
        self.norm = torch.nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.reshape(x.shape[0], 4, 3)
        att = torch.softmax(self.q(t) @ self.k(t).transpose(1, 2), dim=-1)
        return self.norm(torch.nn.functional.leaky_relu(att @ t, 0.3) + self.act(t))


def test_torch_softmax_and_leaky_relu() -> None:
    from gridverify.ir.from_torch import from_torch

    torch.manual_seed(0)
    model = _AttentionLeaky().double().eval()
    graph = from_torch(model, (12,))
    x = torch.randn(5, 12, dtype=torch.float64)
    assert torch.allclose(graph.forward(x)["y"], model(x), rtol=1e-12, atol=1e-12)
    result = crown(graph, (x[:1] - 0.05, x[:1] + 0.05))
    samples = graph.forward(x[:1] - 0.05 + 0.1 * torch.rand(500, 12, dtype=torch.float64))["y"]
    flat = samples.reshape(500, -1)
    assert bool(((flat >= result.lower) & (flat <= result.upper)).all())
