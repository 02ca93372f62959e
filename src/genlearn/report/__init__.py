"""What was learned, shown: `genlearn report` (one self-contained HTML page per run or per comparison of runs,
genlearn.report.page), the demo's report as HTML (genlearn.report.markdown) and TensorBoard logging during
training (genlearn.report.tensorboard, the optional `tensorboard` extra)."""
from genlearn.report.page import Report, build_report, write_report

__all__ = ["Report", "build_report", "write_report"]
