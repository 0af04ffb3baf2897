"""Errors that fuser raises.

``FuserError`` and its subclasses are *user* errors: the CLI prints their message on one line
and exits with code 2 (bad input) without a traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class FuserError(Exception):
    """A problem with what the user gave fuser (file, model, option)."""


class BadModelError(FuserError):
    """The input is not a usable ONNX model (unreadable, invalid, unsupported)."""


class MissingDependencyError(FuserError):
    """An optional framework is needed but not installed."""


class PassError(RuntimeError):
    """A pass raised or broke the graph; the message names the pass and the passes before it."""
