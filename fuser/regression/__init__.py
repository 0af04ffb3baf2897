"""``onnx-fuser check``: a regression check of an exported model against a stored baseline.

The baseline is a JSON file (stable, sorted, human-readable: its diff is what a reviewer
reads) plus a ``.npz`` beside it with the stored inputs and golden outputs. Each check has
its tolerance in the JSON, for a team to edit:

- ``inputs``: names, shapes and dtypes of the model's inputs;
- ``outputs``: names and shapes, and values on the stored inputs within ``atol + rtol *
  max|golden|``;
- ``ops``: the op histogram (``max_changed`` nodes may differ in all, default 0);
- ``batchnorm``: BatchNormalization nodes left (at most ``max``);
- ``params``, ``macs``: within ``rtol``;
- ``rewrites``: per-pass rewrite counts (``--optimize`` only);
- ``latency``: the model's median latency as a ratio to a reference model measured in the
  same run (never absolute times), at most ``max_ratio``;
- ``export``: framework-vs-ONNX max abs difference (``--torch`` / ``--keras``).

With ``--optimize`` the checked model is fuser's exact pipeline applied to MODEL.
"""

from fuser.regression.baseline import (
    SCHEMA,
    Check,
    CheckResult,
    Subject,
    junit,
    make_baseline,
    read_baseline,
    write_baseline,
)
from fuser.regression.checks import compare
from fuser.regression.run import latency_ratio, run, subject_for

__all__ = ["SCHEMA", "Check", "CheckResult", "Subject", "compare", "junit", "latency_ratio",
           "make_baseline", "read_baseline", "run", "subject_for", "write_baseline"]
