"""Sound bounds on graphs: IBP, CROWN (backward linear bound propagation) and alpha-CROWN."""

from gridverify.bounds.alpha import AlphaConfig, alpha_crown
from gridverify.bounds.core import BoundResult, LinearBounds
from gridverify.bounds.crown import crown, ibp

__all__ = ["AlphaConfig", "BoundResult", "LinearBounds", "alpha_crown", "crown", "ibp"]
