"""`Region`: construction from nominal loads, parsing, membership, boxes and round trips (case14's data
read from the shipped case folder, so these run on a fresh clone)."""

import numpy as np
import pytest
import torch

from gridverify.grid.data import GridData
from gridverify.specs import Region, nominal_load
from gridverify.surrogate import load_case


@pytest.fixture(scope="module")
def data() -> GridData:
    return load_case("case14").data


def test_around_is_plus_minus_percent_of_each_magnitude(data: GridData) -> None:
    region = Region.around(data, 10.0)
    nominal = nominal_load(data)
    assert region.size == 2 * len(data.loads.bus) == 22
    assert np.allclose(region.upper - region.lower, 0.2 * np.abs(nominal), rtol=0, atol=1e-15)
    assert np.allclose(region.center, nominal, rtol=0, atol=1e-15)
    # case14 bus 4 has qd = -3.9 MVAr: the box still contains it, with lower < nominal < upper
    negative = np.flatnonzero(nominal < 0)
    assert negative.size == 1 and nominal[negative[0]] == pytest.approx(-0.039)
    assert region.lower[negative[0]] == pytest.approx(-0.0429) and region.upper[negative[0]] == pytest.approx(
        -0.0351
    )


def test_scaled_keeps_order_for_negative_loads(data: GridData) -> None:
    region = Region.scaled(data, 0.8, 1.05)
    nominal = nominal_load(data)
    assert np.all(region.lower <= region.upper)
    assert np.allclose(np.minimum(0.8 * nominal, 1.05 * nominal), region.lower)
    assert region.contains(nominal) and not region.contains(1.1 * nominal)


@pytest.mark.parametrize(("text", "label"), [("+-10%", "+-10%"), ("10%", "+-10%"), ("±2.5%", "+-2.5%"),
                                             (" 0.9 : 1.1 ", "0.9:1.1"), ("1:1", "1:1")])  # fmt: skip
def test_parse_accepts_the_documented_forms(data: GridData, text: str, label: str) -> None:
    region = Region.parse(text, data)
    assert region.label == label
    expected = Region.around(data, 10.0) if text in ("+-10%", "10%") else region
    assert region == expected


REFUSED = [("-10%", ">= 0"), ("+--5%", ">= 0"), ("1.1:0.9", "lo > hi"), ("abc", "not understood"),
           ("", "not understood"), ("0.9:", "not understood"), ("10", "not understood")]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_parse_rejects_the_rest_with_a_clear_message(data: GridData, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Region.parse(text, data)


def test_box_contains_sample_and_round_trip(data: GridData) -> None:
    region = Region.around(data, 5.0)
    lower, upper = region.box()
    assert lower.shape == upper.shape == (1, 22) and lower.dtype == torch.float64
    samples = region.sample(200, np.random.default_rng(0))
    assert region.contains(samples).all() and region.contains(torch.as_tensor(samples[0]))
    outside = samples[0].copy()
    outside[3] = region.upper[3] + 1e-9
    assert not region.contains(outside) and region.contains(outside, atol=1e-8)
    again = Region.from_dict(region.to_dict())
    assert again == region and again.label == "+-5%" and hash(again) == hash(region)
    assert "+-5%" in region.describe() and "11 loads" in region.describe()


def test_invalid_boxes_are_refused() -> None:
    with pytest.raises(ValueError, match="lower > upper"):
        Region(np.array([0.0, 1.0]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="finite"):
        Region(np.array([0.0, -np.inf]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        Region(np.zeros(2), np.ones(3))
    region = Region(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="2 entries"):
        region.contains(np.zeros(3))
