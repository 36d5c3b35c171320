"""Specifications: VNN-LIB 1.0 properties as an input box and an unsafe output set."""

from gridverify.specs.vnnlib import Disjunct, VnnlibError, VnnlibSpec, parse_vnnlib, read_vnnlib

__all__ = ["Disjunct", "VnnlibError", "VnnlibSpec", "parse_vnnlib", "read_vnnlib"]
