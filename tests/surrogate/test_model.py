"""`AcopfSurrogate` and `Layout`: outputs inside their ranges whatever the input, the reference angle fixed,
a fingerprint that follows the weights, state-dict round trips and layout checks."""

import numpy as np
import pytest
import torch

from gridverify.grid.data import GridData
from gridverify.specs import Region
from gridverify.surrogate import AcopfSurrogate, Layout, load_case


@pytest.fixture(scope="module")
def data() -> GridData:
    return load_case("case14").data


def _model(data: GridData, seed: int = 0) -> AcopfSurrogate:
    torch.manual_seed(seed)
    layout = Layout.of(data)
    model = AcopfSurrogate(layout, (16, 16))
    region = Region.around(data, 10.0)
    lower = np.concatenate([data.gens.pmin_pu, data.gens.qmin_pu, data.buses.vmin_pu, np.full(14, -0.5)])
    upper = np.concatenate([data.gens.pmax_pu, data.gens.qmax_pu, data.buses.vmax_pu, np.full(14, 0.1)])
    lower[2 * 5 + 14 + data.buses.ref] = upper[2 * 5 + 14 + data.buses.ref] = data.buses.ref_va_rad
    model.set_scaling(region.center, region.radius, lower, upper)
    return model.eval()


def test_outputs_stay_in_their_limits_and_the_reference_angle_is_fixed(data: GridData) -> None:
    model = _model(data)
    loads = torch.randn(500, 22, dtype=torch.float64) * 100.0  # far outside the region too
    out = model.dispatch(loads)
    assert set(out) == {"pg_pu", "qg_pu", "vm_pu", "va_rad"}
    assert out["pg_pu"].shape == (500, 5) and out["va_rad"].shape == (500, 14)
    limits = {
        "pg_pu": (data.gens.pmin_pu, data.gens.pmax_pu),
        "vm_pu": (data.buses.vmin_pu, data.buses.vmax_pu),
    }
    for name, (lo, hi) in limits.items():
        # lower + (upper - lower) * sigmoid rounds to within an ulp of the ends when saturated
        assert (out[name] >= torch.tensor(lo) - 1e-15).all() and (out[name] <= torch.tensor(hi) + 1e-15).all()
    ref = int(data.buses.ref[0])
    assert torch.equal(
        out["va_rad"][:, ref], torch.full((500,), float(data.buses.ref_va_rad[0]), dtype=torch.float64)
    )


def test_fingerprint_follows_weights_and_round_trips(data: GridData) -> None:
    a, b = _model(data, 0), _model(data, 1)
    assert a.fingerprint() == _model(data, 0).fingerprint() != b.fingerprint()
    assert len(a.fingerprint()) == 64
    copy = AcopfSurrogate.from_state_dict(a.state_dict(), Layout.of(data))
    assert copy.hidden == (16, 16) and not copy.training and copy.fingerprint() == a.fingerprint()
    with torch.no_grad():
        copy.head.bias[0] += 1e-12
    assert copy.fingerprint() != a.fingerprint()


def test_layout_orders_and_checks(data: GridData) -> None:
    layout = Layout(
        (("qd_pu", 11), ("pd_pu", 11)), (("va_rad", 14), ("pg_pu", 5), ("vm_pu", 14), ("qg_pu", 5))
    )
    assert layout.input_order().tolist() == list(range(11, 22)) + list(range(11))
    assert layout.output_slices["pg_pu"] == slice(14, 19)
    layout.check(data)
    assert Layout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match="vm_pu: 13"):
        Layout.of(data).__class__(
            layout.inputs, (("va_rad", 14), ("pg_pu", 5), ("vm_pu", 13), ("qg_pu", 5))
        ).check(data)
    with pytest.raises(ValueError, match="must be"):
        Layout((("pd_pu", 11),), layout.outputs)
    with pytest.raises(ValueError, match="activation"):
        AcopfSurrogate(layout, (4,), activation="gelu")
    with pytest.raises(ValueError, match="finite"):
        _model(data).set_scaling(np.zeros(22), np.ones(22), np.zeros(38), np.full(38, np.inf))
