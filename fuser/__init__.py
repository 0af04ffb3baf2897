"""fuser: make trained CNNs faster by rewriting their ONNX graphs.

Public API::

    model, report = fuser.optimize("model.onnx")        # exact pipeline, validated
    fuser.save(model, "model.opt.onnx")
    print(report.to_text())

``import fuser`` never imports torch or TensorFlow; the frontends import them on use.
"""

from __future__ import annotations

from fuser import search  # noqa: F401  (registers the weight-only low-rank passes)
from fuser.about import __version__
from fuser.api import Timing, Validation, benchmark, optimize, validate
from fuser.errors import BadModelError, FuserError, PassError
from fuser.ir import load, save
from fuser.passes import DEFAULT_PIPELINE, REGISTRY, Pass, PassResult
from fuser.passes.manager import PassManager
from fuser.report import Report, ValidationResult

__all__ = [
    "DEFAULT_PIPELINE",
    "REGISTRY",
    "BadModelError",
    "FuserError",
    "Pass",
    "PassError",
    "PassManager",
    "PassResult",
    "Report",
    "Timing",
    "Validation",
    "ValidationResult",
    "__version__",
    "benchmark",
    "load",
    "optimize",
    "save",
    "validate",
]
