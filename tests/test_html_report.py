"""``--report out.html`` (issue 29): one self-contained page with the exact stage's rewrites,
the latency against the original with intervals, validation, and for a lossy run the
per-layer choices, the guard's ladder and the search's phases; opened in a real headless
browser (Chromium, Debian's package), which decodes every inlined figure and renders a
screenshot.

Without Chromium the browser checks skip, unless ``FUSER_REQUIRE_BROWSER=1`` (``.ci/run``
installs Chromium and sets it): then a missing browser fails.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from fuser import ir as graph_io
from fuser.cli import main
from fuser.report import Report
from fuser.report.html import report_html
from fuser.search.config import Search
from fuser.search.search import compress
from tests.helpers import FAST_TIMING, conv_bn_model
from tests.test_lowrank_guard import _plant, _scores
from tests.test_lowrank_search import PlantedTable


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")
    if found is None and os.environ.get("FUSER_REQUIRE_BROWSER") == "1":
        pytest.fail("FUSER_REQUIRE_BROWSER=1 but no Chromium on PATH (apt install chromium)")
    return found


def _browse(path, *args: str) -> subprocess.CompletedProcess:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (apt install chromium)")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args, f"file://{path}"],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    """``onnx-fuser optimize m.onnx -o o.onnx --report r.html``: the page and its report."""
    folder = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(0)
    model = conv_bn_model(rng)
    graph_io.save(model, folder / "m.onnx")
    args = ["optimize", str(folder / "m.onnx"), "-o", str(folder / "o.onnx"), *FAST_TIMING]
    with contextlib.redirect_stdout(io.StringIO()) as out:  # --json: the same run's record
        assert main([*args, "--report", str(folder / "r.html"), "--json"]) == 0
    report = Report.from_dict(json.loads(out.getvalue()))
    return folder / "r.html", report


def _sections(page: str) -> set[str]:
    return set(re.findall(r"<h[23] id='([a-z]+)'", page))


def test_the_page_is_self_contained_and_has_the_exact_stage_latency_and_validation(
        exact_run):
    path, report = exact_run
    page = path.read_text()
    assert page.startswith("<!doctype html>")
    assert {"exact", "latency", "validation"} <= _sections(page)
    assert "fold-batchnorm" in page and "BatchNormalization" in page
    # the latency against the original with its interval, as the report has it
    ratio = report.speed.ratios[0]
    assert f"{ratio.speedup:.2f}x [{ratio.speedup_ci[0]:.2f}, {ratio.speedup_ci[1]:.2f}]" in page
    assert "PASSED | " in page  # the last line's verdict and figures
    # no file or network reference: figures are data URLs, the style is inline
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)
    figures = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(figures) == int(re.search(r"data-figures='(\d+)'", page).group(1)) == 1
    with Image.open(io.BytesIO(base64.b64decode(figures[0]))) as image:
        assert image.width >= 600 and image.height >= 250


def test_a_lossy_page_shows_the_choices_the_ladder_and_the_phases(exact_run, monkeypatch,
                                                                  rng, tmp_path):
    """A planted search (the guard refuses its only rung) in the exact run's report."""
    _, report = exact_run
    original, _ = _plant(monkeypatch, rng)
    _, lossy = compress(original, _scores(128 + 368, list(range(128, 135))),
                        Search(budget="macs=0.5", max_accuracy_drop=0.01),
                        table=PlantedTable("-"))
    page = report_html(dataclasses.replace(report, lowrank=lossy), "FAILED | refused")
    assert {"lossy", "layers", "ladder", "phases"} <= _sections(page)
    assert "refused" in page and "allowed drop 0.01" in page
    rung = lossy.ladder[0]
    assert f"[{rung.interval[0]:.4f}, {rung.interval[1]:.4f}]" in page
    assert page.count("src='data:image/png;base64,") == 3  # latency, ladder, phases
    (tmp_path / "lossy.html").write_text(page)
    dom = _browse(tmp_path / "lossy.html", "--dump-dom").stdout
    assert 'data-figures-decoded="3"' in dom


def test_chromium_decodes_every_figure_and_renders_the_page(exact_run, tmp_path):
    path, _ = exact_run
    dom = _browse(path, "--dump-dom").stdout
    assert 'data-figures-decoded="1"' in dom and "Latency against the original" in dom
    shot = tmp_path / "shot.png"
    _browse(path, f"--screenshot={shot}", "--window-size=1200,1800")
    with Image.open(shot) as image:
        assert image.size == (1200, 1800)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 50  # text, tables and a chart: not blank


def test_only_optimize_writes_html(exact_run, capsys):
    path, _ = exact_run
    model = str(path.parent / "m.onnx")
    assert main(["validate", model, model, "--report", str(path.parent / "v.html")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "the extension names the format: .json, .md, .markdown")
