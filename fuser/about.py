"""fuser's version, and the versions of the libraries that shape its results (both go into
every report)."""

from __future__ import annotations

import functools
import importlib.metadata

__version__ = "0.1.0"

_LIBRARIES = ("onnx", "onnx-graphsurgeon", "numpy", "protobuf", "onnxruntime",
              "onnxruntime-gpu")


@functools.cache
def version() -> str:
    """fuser's version (from the installed distribution, or the source tree's)."""
    try:
        return importlib.metadata.version("onnx-fuser")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape fuser's results."""
    return dict(_library_versions())  # a copy: callers may edit their report's


@functools.cache
def _library_versions() -> dict[str, str]:
    """Read once per process: the package metadata lookups cost ~20 ms a call."""
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
