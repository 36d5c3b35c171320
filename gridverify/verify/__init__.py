"""The user's main job: `verify` a case's surrogate over a load region, constraint by constraint, into a
`Certificate` (versioned JSON) and replay violations in pandapower; `gridverify.reports` writes its report."""

from gridverify.specs.certificate import SCHEMA, Certificate, CertificateError, ConstraintRecord
from gridverify.verify.run import RegionWarning, VerifyConfig, verify

__all__ = [
    "SCHEMA",
    "Certificate",
    "CertificateError",
    "ConstraintRecord",
    "RegionWarning",
    "VerifyConfig",
    "verify",
]
