"""fuser: make trained CNNs faster by rewriting their ONNX graphs.

Public API::

    model, report = fuser.optimize("model.onnx")        # exact pipeline, validated
    fuser.save(model, "model.opt.onnx")
    print(report.to_text())

The names below are imported on first use (PEP 562), so that ``import fuser`` and the
command's ``--version`` or ``-h`` cost no numpy, onnx or onnxruntime import. ``import fuser``
never imports torch or TensorFlow; the frontends import them on use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fuser.about import __version__

if TYPE_CHECKING:
    from fuser.api import Timing, Validation, benchmark, optimize, validate
    from fuser.errors import BadModelError, FuserError, PassError
    from fuser.ir import load, save
    from fuser.passes import DEFAULT_PIPELINE, REGISTRY, Pass, PassResult
    from fuser.passes.manager import PassManager
    from fuser.report import Report, ValidationResult

#: Each public name and the module it comes from.
_FROM = {
    **dict.fromkeys(("Timing", "Validation", "benchmark", "optimize", "validate"), "fuser.api"),
    **dict.fromkeys(("BadModelError", "FuserError", "PassError"), "fuser.errors"),
    **dict.fromkeys(("load", "save"), "fuser.ir"),
    **dict.fromkeys(("DEFAULT_PIPELINE", "REGISTRY", "Pass", "PassResult"), "fuser.passes"),
    "PassManager": "fuser.passes.manager",
    **dict.fromkeys(("Report", "ValidationResult"), "fuser.report"),
}

__all__ = [  # noqa: RUF022  (grouped as _FROM is)
    "__version__",
    "Timing", "Validation", "benchmark", "optimize", "validate",
    "BadModelError", "FuserError", "PassError",
    "load", "save",
    "DEFAULT_PIPELINE", "REGISTRY", "Pass", "PassResult",
    "PassManager",
    "Report", "ValidationResult",
]


def __getattr__(name: str) -> object:
    """A public name or a submodule, imported on first use."""
    if name not in _FROM:  # a submodule (``fuser.api``), as a package's eager imports gave
        try:
            return importlib.import_module(f"fuser.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fuser.{name}":
                raise
            raise AttributeError(f"module 'fuser' has no attribute {name!r}") from None
    if name == "REGISTRY":  # importing fuser.search registers the weight-only low-rank passes
        importlib.import_module("fuser.search")
    value = getattr(importlib.import_module(_FROM[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
