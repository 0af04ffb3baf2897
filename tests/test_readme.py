"""The README matches the tool (issue 29: a fresh-clone trial found `--atol logits:` for a
model whose output is `output`, no command that made `r18.onnx`, an API example feeding
224x224 inputs to the 64x64 model).

From a clean folder: the recipe makes `r18.onnx`; every command of the "Use" block runs as
written; the Python example runs; and each transcript of a run on `r18.onnx`
(`$ onnx-fuser ...`) is compared with a real run, line by line, numbers masked.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from fuser.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
USE = TEXT.split("\n## Use\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` ("" for plain ones), opening and closing fences
    told apart."""
    blocks, current, kind = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, kind = [], line[3:].strip()
            else:
                if kind == language:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


#: Commands that time run with a short budget here: the timing's length is not what the
#: README test checks (the commands are otherwise as written).
FAST = ["--time-budget", "0.3", "--rounds", "5", "--warmup", "1"]


def _fast(words: list[str]) -> list[str]:
    """``words`` with the short time budget; an optimize that times keeps its passes even
    when a busy machine times the result slower (``--allow-slower``): a rollback would
    change the lines the transcripts show, not what the README says about the tool."""
    if words and words[0] == "optimize" and "--no-bench" not in words:
        return [*words, *FAST, "--allow-slower"]
    return [*words, *FAST] if words and words[0] == "bench" else words


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A clean folder with what the README's recipes make (``r18.onnx``, ``pad_net.onnx``,
    ``vgg.onnx`` and ``calib.npz``) and an image folder for ``--inputs images/``."""
    folder = tmp_path_factory.mktemp("readme")
    recipes = [b for b in _blocks(TEXT, "python")  # those that write a named .onnx
               if re.search(r'torch_frontend\.export\(.*"\w+\.onnx"\)', b)]
    assert len(recipes) == 3
    with contextlib.chdir(folder):
        for recipe in recipes:
            exec(compile(recipe, "README.md", "exec"), {})  # noqa: S102 - the README's code
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # of another size than the input's: the loader resizes them
        Image.fromarray(rng.integers(0, 256, (80, 70, 3), dtype=np.uint8)).save(
            images / f"{i}.png")
    return folder


@pytest.fixture
def folder(made, tmp_path, monkeypatch) -> Path:
    """A copy of the clean folder to run in (the working directory)."""
    for item in made.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_recipe_makes_the_model_the_examples_describe(made):
    model = onnx.load(made / "r18.onnx")
    (given,), (output,) = model.graph.input, model.graph.output
    dims = [d.dim_value or d.dim_param for d in given.type.tensor_type.shape.dim]
    assert given.name == "input" and dims[1:] == [3, 64, 64] and isinstance(dims[0], str)
    assert output.name == "output" and output.type.tensor_type.shape.dim[1].dim_value == 10
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 20


def _commands(block: str) -> list[str]:
    """A shell block's commands, continuation lines joined, comment lines left out."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_shell_command_of_the_readme_runs_as_written(folder, capsys):
    """Every ``sh`` block, in the README's order, in one clean folder: ``onnx-fuser`` lines
    through ``main`` (timed commands with a short budget), others (``mkdir``, ``cp``) by
    the shell; ``make``, ``source`` and the benchmarks (half an hour) are not run here. The
    files the README says to write (``# my_models.py``) are written first."""
    for block in _blocks(TEXT, "python"):
        name = re.match(r"# (\w+\.py)\n", block)
        if name:
            (folder / name.group(1)).write_text(block)
    keras_model = re.search(r'`(build\("resnet", "keras".*?\.save\("model\.keras"\))`', TEXT)
    exec(f"from fuser.zoo import build\n{keras_model.group(1)}", {})  # noqa: S102
    ran = []
    for block in _blocks(TEXT, "sh"):
        for command in _commands(block):
            if command.startswith(("make ", "source ", "python -m benchmarks")):
                continue  # the install jobs (CI runs `make test`), the venv, the benchmarks
            if not command.startswith("onnx-fuser"):
                subprocess.run(command, shell=True, check=True, cwd=folder)  # noqa: S602
                continue
            words = shlex.split(command, comments=True)
            code = main(_fast(words[1:]))
            out = capsys.readouterr()
            assert code == 0, f"{command} exited {code}: {out.err.strip()[-300:]}"
            ran.append(words[1] if len(words) > 1 else "")
    assert len(ran) >= 24 and {"optimize", "validate", "bench", "check", "passes",
                               "export"} <= set(ran)
    assert (folder / "report.html").read_text().startswith("<!doctype html>")
    assert (folder / "check.xml").exists() and (folder / "model.onnx").exists()


def test_the_python_example_of_use_runs(folder, capsys):
    (code,) = [b for b in _blocks(USE, "python") if "fuser.optimize(" in b]
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "fold-batchnorm" in out and "validation on" in out and "speed-up" in out
    assert (folder / "r18.opt.onnx").exists()


#: What a transcript may show that another run need not: the machine's load and CPU, and
#: whether an interval resolved.
_VARIES = re.compile(r"^\s*(WARNING|warning: machine busy|speed: an interval stayed)")


def _shape(line: str) -> str:
    """A line with its numbers masked (and what varies run to run: ``?``, ``unresolved``,
    the CPU's name)."""
    line = line.replace("?", "").replace(", unresolved", "").replace("unresolved", "")
    if "low-rank: " in line:  # what follows the output error depends on the layers' timings
        line = line.split(", relative output error")[0]
    line = re.sub(r"threads, .*$", "threads, CPU", line)
    line = re.sub(r"-?\d[\d,]*(\.\d+)?(e[+-]?\d+)?[GMk]?", "#", line)
    return " ".join(line.split())


def _transcripts() -> list[tuple[str, list[str]]]:
    """Each ``$ onnx-fuser ...`` line of a plain block with the lines it printed (up to the
    next command); ``...`` marks lines cut."""
    found: list[tuple[str, list[str]]] = []
    for block in _blocks(TEXT, ""):
        printed: list[str] | None = None  # the current command's lines, in this block
        for line in block.splitlines():
            if line.startswith("$ onnx-fuser"):
                printed = []
                found.append((line[2:], printed))
            elif printed is not None:
                printed.append(line)
    return found


def test_the_transcripts_match_real_runs(folder):
    transcripts = _transcripts()
    assert [t[0].split()[1:3] for t in transcripts] == [
        ["optimize", "r18.onnx"], ["optimize", "pad_net.onnx"], ["optimize", "pad_net.onnx"],
        ["validate", "r18.onnx"], ["bench", "r18.onnx"], ["optimize", "vgg.onnx"]]
    for command, shown in transcripts:  # in order: optimize writes what the others read
        with contextlib.redirect_stdout(io.StringIO()) as out, \
                contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(_fast(shlex.split(command)[1:])) == 0, err.getvalue()[-300:]
        real = {_shape(line) for line in (out.getvalue() + err.getvalue()).splitlines()}
        missing = [line for line in shown if not _VARIES.match(line) and line != "..."
                   and _shape(line) not in real]
        assert not missing, f"{command}: the README shows lines no real run prints: {missing}"
