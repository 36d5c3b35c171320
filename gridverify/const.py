"""`Const`: an immutable, hashable tensor used as a node parameter (weights, indices, constant values).

Two constants are equal when dtype, shape and content (bytes) agree, so graphs that hold the same weights
intern to the same nodes. Values are stored on the CPU in float64 (or int64 / bool) and converted on use
to the dtype and device of the tensors they meet (cached per dtype and device).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _canonical(value: Any) -> Tensor:
    t = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    t = t.to("cpu")
    if t.is_sparse:
        t = t.coalesce()
        dtype = torch.float64 if t.dtype.is_floating_point else t.dtype
        return t.to(dtype)
    if t.dtype.is_floating_point:
        t = t.to(torch.float64)
    elif t.dtype != torch.bool:
        t = t.to(torch.int64)
    return t.clone().contiguous()


def _digest(t: Tensor) -> str:
    h = hashlib.sha1()
    parts = [t.indices(), t.values()] if t.is_sparse else [t]
    for p in parts:
        h.update(p.contiguous().numpy().tobytes())
    return h.hexdigest()


class Const:
    """A constant tensor parameter; hashable by content. Never mutate ``.tensor``."""

    __slots__ = ("_cache", "_key", "tensor")
    tensor: Tensor
    _key: tuple[str, tuple[int, ...], bool, str]
    _cache: dict[tuple[torch.dtype, torch.device], Tensor]

    def __init__(self, value: Any) -> None:
        t = _canonical(value)
        object.__setattr__(self, "tensor", t)
        object.__setattr__(self, "_key", (str(t.dtype), tuple(t.shape), t.is_sparse, _digest(t)))
        object.__setattr__(self, "_cache", {})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Const is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Const) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        kind = "sparse " if self.tensor.is_sparse else ""
        if not self.tensor.is_sparse and self.tensor.numel() <= 4:
            return f"Const({self.tensor.tolist()})"
        return f"Const({kind}{tuple(self.tensor.shape)}, {self._key[3][:8]})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def is_sparse(self) -> bool:
        return self.tensor.is_sparse

    def like(self, x: Tensor) -> Tensor:
        """This constant on ``x``'s device, in ``x``'s dtype when both are floating point."""
        floating = self.tensor.dtype.is_floating_point
        dtype = x.dtype if floating and x.dtype.is_floating_point else self.tensor.dtype
        key = (dtype, x.device)
        if key not in self._cache:
            self._cache[key] = self.tensor.to(device=x.device, dtype=dtype)
        return self._cache[key]
