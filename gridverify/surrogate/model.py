"""`AcopfSurrogate`: an MLP from loads to a dispatch, with every output squashed into its limits, and its
`Layout` (which slices of the flat input and output are which quantity).

    load (B, 2D) = concat(pd_pu, qd_pu)
      -> z = (load - center) / radius                    (the training region's box mapped to [-1, 1])
      -> hidden layers: Linear + activation (ReLU by default)
      -> y = lower + (upper - lower) * sigmoid(Linear(h))  (B, K), K = 2G + 2N

as in the ml4acopf benchmark's models. ``y = concat(pg_pu (G,), qg_pu (G,), vm_pu (N,), va_rad (N,))`` in
the order of `GridData` (generators, buses). pg, qg and vm are squashed into the case's own limits; va
into a per-bus range chosen at training time (the training data's range, widened; see
`gridverify.surrogate.train`). The reference bus's angle is not predicted: its range is the degenerate
``[ref_va, ref_va]``, so its output is exactly the case's reference angle whatever the network says (the
same holds for any generator with ``pmin == pmax``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gridverify.grid.data import GridData

__all__ = ["ACTIVATIONS", "DISPATCH", "AcopfSurrogate", "Layout"]

DISPATCH = ("pg_pu", "qg_pu", "vm_pu", "va_rad")  # the outputs a surrogate must give, by name
LOADS = ("pd_pu", "qd_pu")
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class Layout:
    """Which entries of a surrogate's flat input and output are which quantity: ``inputs`` and ``outputs``
    are ``(name, size)`` pairs in order. Inputs are ``pd_pu`` (D,) and ``qd_pu`` (D,); outputs
    ``pg_pu``, ``qg_pu`` (G,), ``vm_pu``, ``va_rad`` (N,), each exactly once, in any order."""

    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        for side, names, pairs in (("inputs", LOADS, self.inputs), ("outputs", DISPATCH, self.outputs)):
            given = sorted(n for n, _ in pairs)
            if given != sorted(names):
                raise ValueError(f"layout {side} must be {names} in some order, got {[n for n, _ in pairs]}")
            if any(int(s) < 0 for _, s in pairs):
                raise ValueError(f"layout {side} has a negative size: {pairs}")

    @classmethod
    def of(cls, data: GridData) -> Layout:
        """The standard order: inputs (pd, qd), outputs (pg, qg, vm, va)."""
        d, g, n = len(data.loads.bus), len(data.gens.bus), len(data.buses.vmin_pu)
        return cls((("pd_pu", d), ("qd_pu", d)), (("pg_pu", g), ("qg_pu", g), ("vm_pu", n), ("va_rad", n)))

    @property
    def n_inputs(self) -> int:
        return sum(s for _, s in self.inputs)

    @property
    def n_outputs(self) -> int:
        return sum(s for _, s in self.outputs)

    @property
    def input_slices(self) -> dict[str, slice]:
        return _slices(self.inputs)

    @property
    def output_slices(self) -> dict[str, slice]:
        return _slices(self.outputs)

    def input_order(self) -> np.ndarray:
        """Where each of the surrogate's input entries sits in ``concat(pd_pu, qd_pu)``, (2D,) int."""
        sizes = dict(self.inputs)
        start = {"pd_pu": 0, "qd_pu": sizes["pd_pu"]}
        return np.concatenate([start[name] + np.arange(size) for name, size in self.inputs]).astype(np.int64)

    def split(self, y: Tensor) -> dict[str, Tensor]:
        """A flat output (B, K) as ``{name: (B, n)}``."""
        if y.shape[-1] != self.n_outputs:
            raise ValueError(f"output has {y.shape[-1]} entries, the layout {self.n_outputs}")
        return {name: y[..., s] for name, s in self.output_slices.items()}

    def check(self, data: GridData) -> None:
        """Raise ValueError unless the sizes match ``data``'s loads, generators and buses."""
        expected = dict(Layout.of(data).inputs + Layout.of(data).outputs)
        wrong = [f"{n}: {s} (case: {expected[n]})" for n, s in self.inputs + self.outputs if s != expected[n]]
        if wrong:
            raise ValueError(f"layout does not fit case {data.name}: " + ", ".join(wrong))

    def to_dict(self) -> dict[str, list[list[object]]]:
        return {"inputs": [[n, s] for n, s in self.inputs], "outputs": [[n, s] for n, s in self.outputs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[Sequence[object]]]) -> Layout:
        pairs = {k: tuple((str(n), int(s)) for n, s in d[k]) for k in ("inputs", "outputs")}  # type: ignore[call-overload]
        return cls(pairs["inputs"], pairs["outputs"])


def _slices(pairs: tuple[tuple[str, int], ...]) -> dict[str, slice]:
    out, start = {}, 0
    for name, size in pairs:
        out[name] = slice(start, start + size)
        start += size
    return out


class AcopfSurrogate(nn.Module):
    """The MLP of the module docstring. Buffers: ``center``, ``radius`` (2D,) of the input normalisation;
    ``lower``, ``upper`` (K,) of the output squash. All float64 unless converted."""

    def __init__(self, layout: Layout, hidden: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        self.layout, self.hidden, self.activation = layout, tuple(int(h) for h in hidden), activation
        sizes = (layout.n_inputs, *self.hidden)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b, dtype=torch.float64), ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], layout.n_outputs, dtype=torch.float64)
        k, n = layout.n_outputs, layout.n_inputs
        for name, size, fill in (
            ("center", n, 0.0),
            ("radius", n, 1.0),
            ("lower", k, 0.0),
            ("upper", k, 1.0),
        ):
            self.register_buffer(name, torch.full((size,), fill, dtype=torch.float64))

    def forward(self, load: Tensor) -> Tensor:
        """``load`` (B, 2D) -> dispatch (B, K), in `layout` order."""
        z = (load - self.center) / self.radius
        return self.lower + (self.upper - self.lower) * torch.sigmoid(self.head(self.body(z)))

    def region_intervals(self) -> list[tuple[Tensor, Tensor]]:
        """Each hidden layer's pre-activation interval ``(1, H)`` over the training region (the normalised
        inputs in [-1, 1]) by interval arithmetic: exact for the first layer, an outer bound after it.
        Differentiable in the weights (`relu_gap` is a training penalty)."""
        lo = -torch.ones(1, self.layout.n_inputs, dtype=self.head.weight.dtype)
        hi, found = -lo, []
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                mid = (lo + hi) / 2 @ layer.weight.T + layer.bias
                rad = (hi - lo) / 2 @ layer.weight.abs().T
                lo, hi = mid - rad, mid + rad
                found.append((lo, hi))
            else:
                lo, hi = layer(lo), layer(hi)  # monotone activations
        return found

    def relu_gap(self) -> Tensor:
        """Mean over the hidden relu neurons of the triangle relaxation's largest gap ``-l u / (u - l)`` on
        their `region_intervals` (0 where the interval does not straddle 0). It is 0 when the network is
        affine over the region, where linear bounds are exact: training with it as a penalty
        (``stability_weight``) gives surrogates whose constraints verification decides."""
        if self.activation != "relu":
            return self.head.weight.new_zeros(())
        gaps = [(torch.relu(hi) * torch.relu(-lo) / (hi - lo).clamp_min(1e-12)).mean() for lo, hi in
                self.region_intervals()]  # fmt: skip
        return torch.stack(gaps).mean() if gaps else self.head.weight.new_zeros(())

    def unstable_relus(self) -> list[int]:
        """Per hidden layer, the relu neurons whose `region_intervals` straddle 0 (an upper count beyond
        the first layer)."""
        if self.activation != "relu":
            return []
        with torch.no_grad():
            return [int(((lo < 0) & (hi > 0)).sum()) for lo, hi in self.region_intervals()]

    def dispatch(self, load: Tensor) -> dict[str, Tensor]:
        """``{pg_pu, qg_pu: (B, G), vm_pu, va_rad: (B, N)}``."""
        return self.layout.split(self(load))

    def set_scaling(
        self, center: np.ndarray, radius: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> None:
        """Fill the normalisation and squash buffers (radius 0 entries, e.g. a zero load, become 1)."""
        radius = np.where(np.asarray(radius) > 0, radius, 1.0)
        if np.any(np.asarray(lower) > np.asarray(upper)) or not np.all(np.isfinite(np.r_[lower, upper])):
            raise ValueError("output ranges must be finite with lower <= upper")
        for name, value in (("center", center), ("radius", radius), ("lower", lower), ("upper", upper)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))

    def problem(self) -> str | None:
        """What makes this surrogate unusable, or None: non-finite weights or buffers, a zero-width (or
        negative) input normalisation ``radius``, an output range with ``lower > upper``."""
        bad = [name for name, value in self.state_dict().items() if not torch.isfinite(value).all()]
        if bad:
            return f"non-finite (NaN or inf) values in {', '.join(bad)}"
        flat = torch.flatten(self.radius <= 0).nonzero().flatten().tolist()
        if flat:
            return f"zero-width input normalisation: radius <= 0 at input entries {flat[:10]}"
        crossed = torch.flatten(self.lower > self.upper).nonzero().flatten().tolist()
        if crossed:
            return f"output range with lower > upper at output entries {crossed[:10]}"
        return None

    def fingerprint(self) -> str:
        """sha256 (hex) of the layout, architecture and every weight and buffer (float64 bytes)."""
        h = hashlib.sha256(repr((self.layout.to_dict(), self.hidden, self.activation)).encode())
        for name, value in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().to(torch.float64).cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def config(self) -> dict[str, object]:
        """What `from_state_dict` needs besides the weights."""
        return {"layout": self.layout.to_dict(), "hidden": list(self.hidden), "activation": self.activation}

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], layout: Layout, activation: str = "relu"
    ) -> AcopfSurrogate:
        """An `AcopfSurrogate` of the given weights (hidden sizes read from them), float64, eval mode."""
        hidden = [int(state[k].shape[0]) for k in sorted(_body_weights(state), key=_layer_index)]
        model = cls(layout, hidden, activation)
        model.load_state_dict({k: v.to(torch.float64) for k, v in state.items()})
        return model.eval()


def _body_weights(state: Mapping[str, Tensor]) -> list[str]:
    return [k for k in state if k.startswith("body.") and k.endswith(".weight")]


def _layer_index(key: str) -> int:
    return int(key.split(".")[1])
