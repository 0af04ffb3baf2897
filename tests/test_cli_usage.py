"""Usage errors in one line and ``--version`` (issue 16, items 11 and 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuser import __version__
from fuser.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(("args", "line"), [
    (["optimize", "m.onnx"], "onnx-fuser optimize: error: the following arguments are "
                             "required: -o/--output (onnx-fuser optimize -h for more)"),
    ([], "onnx-fuser: error: the following arguments are required: command "
         "(onnx-fuser -h for more)"),
    (["bench", "m.onnx", "--level", "max"], "onnx-fuser bench: error: argument --level: invalid "
                                            "choice: 'max' (choose from 'disable', 'basic', "
                                            "'all', 'both') (onnx-fuser bench -h for more)"),
])
def test_a_usage_error_is_one_line_pointing_at_help(capsys, args, line):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_help_still_prints_the_usage(capsys):
    assert main(["optimize", "-h"]) == 0
    assert "--output" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"onnx-fuser {__version__}\n"


def test_readme_says_how_to_run_the_command_after_make():
    text = README.read_text()
    assert ".venv/bin/onnx-fuser" in text and "source .venv/bin/activate" in text
    assert "onnx-fuser --version" in text
