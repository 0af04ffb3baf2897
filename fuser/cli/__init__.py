"""The ``onnx-fuser`` command: ``main`` parses the arguments and runs a subcommand."""

from fuser.cli.main import main

__all__ = ["main"]
