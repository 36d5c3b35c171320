"""The torch front end: converted graphs compute what the module computes (float64, to 1e-12), unsupported
calls are all reported at once, lookup tables come from the op registry, CROWN bounds of a converted model
contain its sampled outputs."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gridverify.bounds.crown import crown
from gridverify.ir import Graph, from_torch
from gridverify.ir.from_torch import TABLES, TorchTraceError, UnsupportedOpError, torch_tables
from gridverify.ops import REGISTRY

TOL = 1e-12


def _assert_matches(graph: Graph, module: nn.Module, *inputs: torch.Tensor) -> None:
    """``graph.forward`` equals the module on the same batch, output by output."""
    want = module(*inputs)
    feeds = inputs[0] if len(inputs) == 1 else dict(zip([n for n, _ in graph.inputs], inputs, strict=True))
    got = graph.forward(feeds)
    if isinstance(want, torch.Tensor):
        want = {"y": want}
    elif isinstance(want, (tuple, list)):
        want = {f"y{i}": w for i, w in enumerate(want)}
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        assert (got[name] - w).abs().max() <= TOL, name


def _batch(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class _Functional(nn.Module):
    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)  # type: ignore[operator]


def _mlp(activation: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), activation, nn.Linear(8, 8), activation, nn.Linear(8, 2)).double()


ACTIVATIONS = {
    "relu": nn.ReLU(),
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "gelu": nn.GELU(),
    "sin": _Functional(torch.sin),
    "cos": _Functional(torch.cos),
    "exp": _Functional(torch.exp),
    "F.relu": _Functional(F.relu),
    "clamp": _Functional(lambda x: x.clamp(-0.5, 0.7)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_mlp_matches_torch(name: str) -> None:
    module = _mlp(ACTIVATIONS[name]).eval()
    graph = from_torch(module, (4,))
    assert [n for n, _ in graph.inputs] == ["input"]
    _assert_matches(graph, module, _batch(16, 4))


class _Bilinear(nn.Module):
    """Attention-like: the product of two activations of the same input."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(4, 5), nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.q(x)) @ torch.tanh(self.k(x)).transpose(1, 2)


def test_matmul_of_two_activations() -> None:
    torch.manual_seed(1)
    module = _Bilinear().double()
    graph = from_torch(module, (3, 4))
    assert sum(n.op == "matmul" for n in graph.nodes) == 1
    _assert_matches(graph, module, _batch(6, 3, 4))


class _Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 12)
        self.register_buffer("offset", torch.linspace(-1, 1, 8).reshape(1, 2, 4))
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(x))  # (N, 12)
        r = h.view(h.size(0), 3, 4)[:, 1:, :] + self.offset  # (N, 2, 4)
        p = r.permute(0, 2, 1).reshape(-1, 8)  # (N, 8)
        head = h[:, : h.shape[1] // 2]  # (N, 6)
        cols = torch.cat([r[..., 0], r[:, :, [3, 1]].flatten(1)], dim=-1)  # (N, 6)
        mixed = (r @ self.weight).sum(dim=1) / (1.5 + h[:, :3] ** 2)  # (N, 3)
        tail = r.transpose(1, 2).unsqueeze(1).squeeze(1).flatten(1) * 2.0 - r.dim()  # (N, 8)
        return torch.cat((p, head, cols, mixed, tail, -F.relu(p).mean(1, keepdim=True)), dim=1)


def test_slicing_cat_reshape_permute() -> None:
    torch.manual_seed(2)
    module = _Shuffle().double()
    graph = from_torch(module, (6,))
    _assert_matches(graph, module, _batch(9, 6))


class _Heads(nn.Module):
    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.body, self.p_head, self.v_head = nn.Linear(3, 6), nn.Linear(6, 2), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor, load: torch.Tensor) -> object:
        h = torch.sigmoid(self.body(x) + load.sum(-1, keepdim=True))
        p, v = self.p_head(h), torch.exp(self.v_head(h)) * load[:, :1]
        return {"p_mw": p, "v_pu": v} if self.as_dict else (p, v)


def test_dict_output_keeps_keys() -> None:
    torch.manual_seed(3)
    module = _Heads(as_dict=True).double()
    graph = from_torch(module, {"x": (3,), "load": (2,)})
    assert [n for n, _ in graph.outputs] == ["p_mw", "v_pu"]
    _assert_matches(graph, module, _batch(5, 3), _batch(5, 2, seed=1))


def test_tuple_output_numbered_or_named() -> None:
    torch.manual_seed(3)
    module = _Heads(as_dict=False).double()
    shapes = {"x": (3,), "load": (2,)}
    graph = from_torch(module, shapes)
    assert [n for n, _ in graph.outputs] == ["y0", "y1"]
    _assert_matches(graph, module, _batch(5, 3), _batch(5, 2, seed=1))
    named = from_torch(module, shapes, output_names=["p", "v"])
    assert [n for n, _ in named.outputs] == ["p", "v"]


class _Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x).flatten(1)
        return torch.logsumexp(h, dim=1) + F.gelu(x.flatten(1), approximate="tanh").sum(1, keepdim=True)


def test_unsupported_calls_reported_together() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        from_torch(_Unsupported(), (1, 5, 5))
    message = str(info.value)
    assert message.startswith("unsupported torch operations (3): ")
    assert "torch.nn.modules.conv.Conv2d at node 'conv1'" in message
    assert "torch.logsumexp at node 'logsumexp'" in message
    assert "approximate='tanh'" in message
    assert [node for _, node in info.value.problems] == ["conv1", "logsumexp", "gelu"]


@pytest.mark.parametrize(
    ("fn", "why"),
    [
        (lambda x: x.sum(), "every dim"),
        (lambda x: torch.flatten(x), "merges the batch"),
        (lambda x: x.view(-1), "across the batch"),
        (lambda x: x.permute(1, 0), "moves the batch"),
        (lambda x: x[0], "keep the batch"),
        (lambda x: x + torch.ones(2, 3), "broadcasts against the batch"),
        (lambda x: x.reshape(x.shape[0] * 3), "batch size N"),
        (lambda x: x ** x.sum(1, keepdim=True), "constant number"),
        (lambda x: x**1.5, "integers and 0.5 only"),
    ],
)
def test_calls_that_move_the_batch_dim_are_unsupported(fn: object, why: str) -> None:
    with pytest.raises(UnsupportedOpError, match=why):
        from_torch(_Functional(fn), (3,))


def test_dropout_is_identity_in_eval_only() -> None:
    module = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.3), nn.Tanh()).double()
    with pytest.raises(UnsupportedOpError, match="training mode"):
        from_torch(module, (3,))
    assert module.training  # from_torch never changes the module
    graph = from_torch(module.eval(), (3,))
    assert {n.op for n in graph.nodes} == {"input", "linear", "tanh"}


def test_one_sided_clamp_is_relu_or_clip_to_infinity() -> None:
    torch.manual_seed(5)
    clamps = _Functional(lambda h: h.clamp(min=0) - torch.clamp(h, max=0.2) + F.hardtanh(h))
    module = nn.Sequential(nn.Linear(3, 4), clamps, nn.ReLU6()).double()
    graph = from_torch(module, (3,))
    clips = sorted((n.kwargs["lo"], n.kwargs["hi"]) for n in graph.nodes if n.op == "clip")
    assert sum(n.op == "relu" for n in graph.nodes) == 1
    assert clips == [(-math.inf, 0.2), (-1.0, 1.0), (0.0, 6.0)]
    _assert_crown_contains(graph, module, _batch(2, 3) - 0.5, _batch(2, 3) + 0.5)


def test_shared_subexpressions_intern() -> None:
    module = _Functional(lambda x: torch.sigmoid(x + 1) * F.sigmoid(x + 1.0) + torch.sigmoid(x + 1))
    graph = from_torch(module, (4,))
    assert sum(n.op == "sigmoid" for n in graph.nodes) == 1
    assert sum(n.op == "square" for n in graph.nodes) == 1  # s * s -> square(s)


def test_division_by_a_variable_is_a_reciprocal() -> None:
    graph = from_torch(_Functional(lambda x: 2.0 / (1 + torch.exp(-x))), (2,))
    assert "reciprocal" in {n.op for n in graph.nodes}
    x = _batch(7, 2)
    assert (graph.forward(x)["y"] - 2 * torch.sigmoid(x)).abs().max() <= TOL


class _Preprocessed(nn.Module):
    """Weights transformed in forward by ops with no IR counterpart: constants only, so run in torch."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.randn(3, 4))

    def forward(self, x: torch.Tensor, gain: float = 0.5) -> torch.Tensor:
        return torch.tanh(x @ F.softplus(self.raw).t().contiguous()) * gain


def test_calls_on_constants_only_run_eagerly() -> None:
    torch.manual_seed(6)
    module = _Preprocessed().double()
    graph = from_torch(module, {"x": (4,)})
    assert {n.op for n in graph.nodes} == {"input", "linear", "tanh", "scale"}
    _assert_matches(graph, module, _batch(5, 4))


def test_lookup_tables_cover_every_registry_entry() -> None:
    """Each op's torch_functions are in the tables and resolve to that op."""
    tables = {"functions": TABLES.functions, "methods": TABLES.methods, "modules": TABLES.modules}
    for op in REGISTRY.values():
        for target in op.torch_functions:
            kind = (
                "methods"
                if isinstance(target, str)
                else "modules"
                if isinstance(target, type)
                else "functions"
            )
            assert tables[kind][target] == op.name, (op.name, target)


def test_untraceable_module_is_named() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(TorchTraceError, match="Branchy"):
        from_torch(Branchy(), (3,))


def test_bad_input_names_are_reported() -> None:
    with pytest.raises(ValueError, match="no shape for \\['load'\\]"):
        from_torch(_Heads(as_dict=True), {"x": (3,)})


def test_registry_targets_claimed_twice_are_rejected() -> None:
    twin = replace(REGISTRY["sigmoid"], name="twin", torch_functions=(torch.relu,))
    with pytest.raises(ValueError, match="claimed by 'relu' and 'twin'"):
        torch_tables({"relu": REGISTRY["relu"], "twin": twin})


def _assert_crown_contains(graph: Graph, module: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> None:
    """CROWN bounds over the box contain the module's outputs at 4000 sampled points per box."""
    result = crown(graph, (lower, upper))
    u = torch.rand(lower.shape[0], 4000, *lower.shape[1:], generator=torch.Generator().manual_seed(6))
    points = lower[:, None] + u.double() * (upper - lower)[:, None]
    with torch.no_grad():
        ys = module(points.flatten(0, 1)).reshape(lower.shape[0], 4000, -1)
    assert (result.lower[:, None] <= ys + 1e-9).all()
    assert (result.upper[:, None] >= ys - 1e-9).all()
    assert (result.upper - result.lower).max() < 10.0  # not vacuous


def test_crown_bounds_of_converted_sigmoid_mlp_contain_samples() -> None:
    module = _mlp(nn.Sigmoid()).eval()
    graph = from_torch(module, (4,))
    centre = _batch(3, 4, seed=5)
    _assert_crown_contains(graph, module, centre - 0.3, centre + 0.3)
