"""Specifications, what is asked and what was answered: the load region a surrogate is verified over
(`Region`), VNN-LIB 1.0 properties as an input box and an unsafe output set (`VnnlibSpec`), and the
certificate of a verification (`Certificate`, versioned JSON) with its records' verdicts checked by the
verdict rule of `gridverify.bab.verdict`."""

from gridverify.specs.certificate import SCHEMA, VERDICTS, Certificate, CertificateError, ConstraintRecord
from gridverify.specs.region import Region, nominal_load
from gridverify.specs.vnnlib import Disjunct, VnnlibError, VnnlibSpec, parse_vnnlib, read_vnnlib

__all__ = [
    "SCHEMA",
    "VERDICTS",
    "Certificate",
    "CertificateError",
    "ConstraintRecord",
    "Disjunct",
    "Region",
    "VnnlibError",
    "VnnlibSpec",
    "nominal_load",
    "parse_vnnlib",
    "read_vnnlib",
]
