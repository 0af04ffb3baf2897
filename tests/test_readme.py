"""The README's Python example runs as written (issue 16, item 4: it used undefined names)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fuser import ir as graph_io
from tests.helpers import make_model

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_python_example_of_use_runs(tmp_path, monkeypatch, capsys):
    use = README.read_text().split("\n## Use\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", use, re.S).group(1)
    model = make_model("""
        g (float[N,3,224,224] input) => (float[N,4,224,224] y) {
            c = Conv<pads=[1,1,1,1]>(input, W)
            y = BatchNormalization(c, s, b, mean, var)
        }""", np.random.default_rng(0), W=(4, 3, 3, 3), s=(4,), b=(4,), mean=(4,),
        var=(4,))
    graph_io.save(model, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "fold-batchnorm" in out and "validation on" in out and "speed-up" in out
    assert (tmp_path / "model.opt.onnx").exists()
