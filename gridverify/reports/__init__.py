"""What a certificate looks like to a person: ``report.md`` with its tables (`report`) and the matplotlib
figures (`figures`: violation per bus and line, the grid drawn with violations coloured, bound-vs-time
curves), in one folder."""

from gridverify.reports.report import ReportLockedError, report_lock, write_report

__all__ = ["ReportLockedError", "report_lock", "write_report"]
