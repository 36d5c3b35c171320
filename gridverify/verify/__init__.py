"""The user's main job: `verify` a case's surrogate over a load region, constraint by constraint, into a
`Certificate` (versioned JSON), replay violations in pandapower, and write a report (markdown + figures)."""

from gridverify.verify.certificate import SCHEMA, Certificate, CertificateError, ConstraintRecord
from gridverify.verify.report import write_report
from gridverify.verify.run import RegionWarning, VerifyConfig, verify

__all__ = [
    "SCHEMA",
    "Certificate",
    "CertificateError",
    "ConstraintRecord",
    "RegionWarning",
    "VerifyConfig",
    "verify",
    "write_report",
]
