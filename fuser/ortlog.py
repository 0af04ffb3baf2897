"""onnxruntime's process-wide log severity, as fuser sets it.

A leaf module (it imports no other fuser module): the runtime stage creates sessions, and
the passes stage evaluates constant subgraphs through onnx-graphsurgeon's onnxruntime
sessions; both keep onnxruntime's own log lines to what the user asked for (``-v``/``-q``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: onnxruntime's process-wide log severity as fuser last set it (onnxruntime's default: 2).
_log_severity = 2


def set_log_severity(severity: int) -> None:
    """Set onnxruntime's process-wide log severity (0 verbose ... 3 error, 4 fatal)."""
    global _log_severity
    import onnxruntime  # noqa: PLC0415 - imported on use, as everywhere in fuser

    onnxruntime.set_default_logger_severity(severity)
    _log_severity = severity


@contextlib.contextmanager
def expected_errors_silenced() -> Iterator[None]:
    """Hide onnxruntime's error lines for a call that is expected to fail (a CUDA probe on a
    machine without CUDA libraries), unless the user asked for verbose logs."""
    previous = _log_severity
    if previous < 2:  # verbose: show everything
        yield
        return
    set_log_severity(4)
    try:
        yield
    finally:
        set_log_severity(previous)


