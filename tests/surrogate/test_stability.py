"""Training for verifiability: the relu gap over the region is the triangle relaxation's, and the penalty
removes the unstable neurons that make a surrogate's linear bounds loose."""

import numpy as np
import torch

from gridverify.surrogate.dataset import Dataset
from gridverify.surrogate.model import AcopfSurrogate, Layout
from gridverify.surrogate.train import TrainConfig, fit

F64 = torch.float64
LAYOUT = Layout((("pd_pu", 3), ("qd_pu", 3)), (("pg_pu", 2), ("qg_pu", 2), ("vm_pu", 2), ("va_rad", 2)))


def _model(hidden=(16, 16), seed=0) -> AcopfSurrogate:
    torch.manual_seed(seed)
    m = AcopfSurrogate(LAYOUT, hidden)
    m.set_scaling(np.ones(6), np.full(6, 0.1), np.full(8, -1.0), np.full(8, 1.0))
    return m


def test_relu_gap_is_the_triangle_gap_of_the_first_layer() -> None:
    m = _model(hidden=(2,))
    with torch.no_grad():
        m.body[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0]], dtype=F64))
        m.body[0].bias.copy_(torch.tensor([0.5, 2.0], dtype=F64))
    ((lo, hi),) = m.region_intervals()
    assert torch.allclose(lo, torch.tensor([[-0.5, 1.0]], dtype=F64))
    assert torch.allclose(hi, torch.tensor([[1.5, 3.0]], dtype=F64))
    # neuron 0 straddles 0 on [-0.5, 1.5]: gap 0.5 * 1.5 / 2; neuron 1 is stable
    assert abs(m.relu_gap().item() - (0.5 * 1.5 / 2.0) / 2) < 1e-12
    assert m.unstable_relus() == [1]
    # the intervals hold: sampled pre-activations over the region lie inside them
    z = torch.rand(4000, 6, dtype=F64) * 2 - 1
    pre = m.body[0](z)
    assert bool((pre >= lo - 1e-12).all() and (pre <= hi + 1e-12).all())


def _data(n=400, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    load = 1.0 + 0.1 * rng.uniform(-1, 1, (n, 6))
    z = (load - 1.0) / 0.1
    smooth = np.tanh(z @ rng.normal(size=(6, 8)) / 3)  # a mildly nonlinear map into (-1, 1)
    cols = np.split(0.8 * smooth, 4, axis=1)
    return Dataset(load, *cols, cost=np.zeros(n), failed=0)


def test_stability_penalty_removes_unstable_neurons_and_keeps_the_fit() -> None:
    data = _data()
    plain, stable = _model(), _model()
    fit(plain, data, TrainConfig(hidden=(16, 16), epochs=80))
    fit(stable, data, TrainConfig(hidden=(16, 16), epochs=80, stability_weight=0.1))
    assert stable.relu_gap().item() < 0.1 * plain.relu_gap().item()
    assert sum(stable.unstable_relus()) < sum(plain.unstable_relus())
    x = torch.as_tensor(data.load)
    y = torch.as_tensor(data.target(("pg_pu", "qg_pu", "vm_pu", "va_rad")))
    with torch.no_grad():
        err = [(m(x) - y).abs().mean().item() for m in (plain, stable)]
    assert err[1] < 1.5 * err[0]  # the stable surrogate still fits this mildly nonlinear map
