"""TensorFlow's import-time log lines are filtered from fuser's own runs, its errors are not
(issue 16, item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuser.frontends.tensorflow_import import _IMPORT_NOISE, _stderr_filtered

ROOT = Path(__file__).resolve().parents[2]
NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796269026.796189   12461 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n")
ERROR = "E0000 00:00:1796269026.900000   12461 some_op.cc:42] a real TensorFlow error\n"


def test_the_filter_drops_the_noise_and_keeps_errors(capfd):
    with _stderr_filtered(_IMPORT_NOISE):
        os.write(2, (NOISE + ERROR + NOISE).encode())
    assert capfd.readouterr().err == ERROR


def test_the_filter_keeps_what_is_written_when_the_block_raises(capfd):
    with pytest.raises(ImportError), _stderr_filtered(_IMPORT_NOISE):
        os.write(2, (NOISE + ERROR).encode())
        raise ImportError("no tensorflow")
    assert capfd.readouterr().err == ERROR


def test_a_keras_export_prints_no_tensorflow_import_lines(tmp_path):
    pytest.importorskip("tf2onnx")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    script = ("import os, sys\nfrom fuser.cli import main\n"
              "code = main(['export', 'keras', 'zoo:resnet10', '-o', sys.argv[1]])\n"
              "print('LEVEL', os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.onnx")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[-1] == "LEVEL 2"  # TensorFlow's errors (level 2) still show
    assert done.stdout.splitlines()[-2].startswith("PASSED")
