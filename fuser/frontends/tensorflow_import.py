"""Import TensorFlow quietly: without the lines it prints on import whatever its log level,
but with its errors.

TensorFlow 2.16+ logs through absl before absl's logging is initialized, so
``TF_CPP_MIN_LOG_LEVEL`` does not stop ``All log messages before absl::InitializeLog() ...``
and the oneDNN line on every import; they are filtered out of file descriptor 2 (where C++
writes) during the import, and every other line is written back.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

#: What TensorFlow prints on import whatever its log level (absl logs before its logging is
#: initialized, and TensorFlow reads TF_CPP_MIN_LOG_LEVEL after these lines): noise on every
#: export and demo. Anything else TensorFlow prints (its errors) still shows.
_IMPORT_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are "
               r"written to STDERR\s*$"),
    re.compile(r"^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on"),
    re.compile(r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
)


@contextlib.contextmanager
def _stderr_filtered(noise: tuple[re.Pattern, ...]) -> Iterator[None]:
    """Collect what is written to file descriptor 2 during the block (C++ libraries write
    there directly), then write back every line that matches none of ``noise``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(ln for ln in lines if not any(p.search(ln) for p in noise))
            if kept:
                os.write(2, kept.encode())


def import_tensorflow() -> None:
    """Import TensorFlow (once) without its import-time log lines: TF_CPP_MIN_LOG_LEVEL 2
    (its errors stay visible) set before the import, the lines it prints regardless filtered,
    and absl's Python logging (used by Keras and TensorFlow) kept to errors."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_filtered(_IMPORT_NOISE):
        import tensorflow  # noqa: F401
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
