"""`Region`: a box of load vectors, the set a surrogate is trained on and verified over.

The load vector is ``load = concat(pd_pu, qd_pu)``, shape (2D,), per unit on the case's ``base_mva``, in the
order of ``GridData.loads`` (one load per bus with nonzero demand). Each entry ranges independently between
``lower`` and ``upper``: pd and qd of one load are separate inputs, so a box around nominal does not keep
each load's power factor exactly (it stays within the box's spread of it).

Ways to make one:

- ``Region.around(data, 10.0)``: each pd and qd within +-10% of its nominal value (``|value| * 10%``, so a
  negative load, i.e. an injection, gets a box around it too; a zero stays zero);
- ``Region.scaled(data, 0.9, 1.1)``: each nominal value times a factor in [0.9, 1.1];
- ``Region.parse("+-10%" | "10%" | "0.9:1.1", data)``: the same from text (the CLI and case files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from gridverify.grid.data import GridData

__all__ = ["Region", "nominal_load"]

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_PERCENT = re.compile(r"^\s*(?:\+-|±|\+/-)?\s*" + _NUMBER + r"\s*%\s*$")
_FACTORS = re.compile(r"^\s*" + _NUMBER + r"\s*:\s*" + _NUMBER + r"\s*$")


def nominal_load(data: GridData) -> np.ndarray:
    """The case's own load vector ``concat(pd_pu, qd_pu)``, (2D,)."""
    return np.concatenate([data.loads.p_pu, data.loads.q_pu])


@dataclass(frozen=True, eq=False)
class Region:
    """A box ``lower <= load <= upper`` over ``load = concat(pd_pu (D,), qd_pu (D,))``; ``label`` says how it
    was made (e.g. ``"+-10%"``), for `describe`."""

    lower: np.ndarray
    upper: np.ndarray
    label: str = ""

    def __post_init__(self) -> None:
        lower = np.array(self.lower, dtype=np.float64).reshape(-1)
        upper = np.array(self.upper, dtype=np.float64).reshape(-1)
        if lower.shape != upper.shape:
            raise ValueError(f"region bounds differ in shape: {lower.shape} and {upper.shape}")
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError("region bounds must be finite")
        if np.any(lower > upper):
            raise ValueError(f"region has lower > upper at entries {np.flatnonzero(lower > upper).tolist()}")
        for name, value in (("lower", lower), ("upper", upper)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def around(cls, data: GridData, percent: float = 10.0) -> Region:
        """Each pd and qd within ``+-percent`` of its nominal value (of its magnitude)."""
        if not np.isfinite(percent) or percent < 0:
            raise ValueError(f"region width must be a finite percentage >= 0, got {percent}")
        nominal = nominal_load(data)
        spread = np.abs(nominal) * percent / 100.0
        return cls(nominal - spread, nominal + spread, f"+-{percent:g}%")

    @classmethod
    def scaled(cls, data: GridData, lo: float, hi: float) -> Region:
        """Each nominal pd and qd times a factor in ``[lo, hi]``."""
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"load factors must be finite, got {lo}:{hi}")
        if lo > hi:
            raise ValueError(f"load factor range {lo}:{hi} has lo > hi")
        nominal = nominal_load(data)
        a, b = nominal * lo, nominal * hi
        return cls(np.minimum(a, b), np.maximum(a, b), f"{lo:g}:{hi:g}")

    @classmethod
    def parse(cls, text: str, data: GridData) -> Region:
        """``"+-10%"`` / ``"±10%"`` / ``"10%"`` (`around`) or ``"0.9:1.1"`` (`scaled`)."""
        percent = _PERCENT.match(text)
        if percent:
            return cls.around(data, float(percent.group(1)))
        factors = _FACTORS.match(text)
        if factors:
            return cls.scaled(data, float(factors.group(1)), float(factors.group(2)))
        raise ValueError(
            f"region {text!r} not understood: write '+-P%' or 'P%' (each load within P percent of nominal) "
            "or 'LO:HI' (each nominal load times a factor in [LO, HI], e.g. '0.9:1.1')"
        )

    # -- use --------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """2D, the number of inputs."""
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2

    def describe(self) -> str:
        d = self.size // 2
        how = f" ({self.label})" if self.label else ""
        total = f"total pd {self.lower[:d].sum():.4g} to {self.upper[:d].sum():.4g} pu"
        return f"load box{how} over {d} loads (pd, qd: {self.size} inputs), {total}"

    def box(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` as tensors of shape (1, 2D): one input box for the bound engines."""
        return torch.tensor(self.lower, dtype=dtype)[None], torch.tensor(self.upper, dtype=dtype)[None]

    def contains(self, load: Any, atol: float = 0.0) -> Any:
        """Whether ``load`` (2D,) lies in the box (bool); for a batch (B, 2D), a (B,) bool array."""
        x = np.asarray(load.detach().cpu() if isinstance(load, torch.Tensor) else load, dtype=np.float64)
        if x.shape[-1] != self.size:
            raise ValueError(f"load needs {self.size} entries (pd, qd), got shape {x.shape}")
        inside = np.all((x >= self.lower - atol) & (x <= self.upper + atol), axis=-1)
        return bool(inside) if x.ndim == 1 else inside

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` loads drawn uniformly from the box (every entry independently), (n, 2D)."""
        return self.lower + (self.upper - self.lower) * rng.random((n, self.size))

    def to_dict(self) -> dict[str, Any]:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(), "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Region:
        return cls(np.asarray(d["lower"]), np.asarray(d["upper"]), str(d.get("label", "")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return np.array_equal(self.lower, other.lower) and np.array_equal(self.upper, other.upper)

    def __hash__(self) -> int:
        return hash((self.lower.tobytes(), self.upper.tobytes()))
