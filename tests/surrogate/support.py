"""Helpers of the surrogate tests (and of the train command's bad-input tests)."""

from __future__ import annotations


def tiny_toml(samples: int, epochs: int, **training: float) -> str:
    """``case.toml`` of a tiny case14 case (region +-5%, seed 3, one hidden layer of 8): ``samples`` AC-OPF
    labels, ``epochs`` and the other ``training`` settings."""
    lines = ['name = "tiny14"', 'source = "pglib_opf_case14_ieee.m"', 'region = "+-5%"', "seed = 3"]
    lines += [
        "[architecture]",
        "hidden = [8]",
        "[data]",
        f"samples = {samples}",
        "[training]",
        f"epochs = {epochs}",
    ]
    lines += [f"{key} = {value}" for key, value in training.items()]
    return "\n".join(lines) + "\n"
