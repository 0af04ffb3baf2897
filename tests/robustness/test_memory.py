"""Resource limits: optimizing does not hold the weights more times than it must.

Python-level allocations (tracemalloc sees numpy arrays, not protobuf's C++ memory) of
``fuser.optimize`` without validation, as a multiple of the model file's size. The RSS figures
for ResNet-152 are in benchmarks/MEMORY.md (``python -m benchmarks.memory``).
"""

from __future__ import annotations

import tracemalloc

import fuser
from fuser import ir as graph_io
from fuser.zoo.synthetic import resnet


def test_optimize_holds_few_copies_of_the_weights(tmp_path):
    """Regression: every folded Conv's original weight stayed cached (onnx-graphsurgeon's
    ``Constant.values``) in a dropped constant until the next garbage collection, and the
    export held the graph's arrays next to their exported copies: 3.0x here, now 2.1x."""
    source = tmp_path / "resnet18.onnx"
    graph_io.save(resnet("resnet18"), source)
    size = source.stat().st_size
    tracemalloc.start()
    try:
        model, report = fuser.optimize(source, validate=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rewrites("fold-batchnorm") == 20
    assert graph_io.op_histogram(model).get("BatchNormalization", 0) == 0
    assert peak < 2.5 * size, f"traced peak {peak / size:.2f}x the model's size"


def test_validated_optimize_peaks_under_three_times_the_model(tmp_path):
    """Peak RSS (not only Python allocations) of the default ``optimize`` with validation, in a
    fresh process: regression for onnxruntime sessions that copied the weights twice and an
    original kept beside the result and the candidate's session (5.4x on ResNet-152)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    source = tmp_path / "resnet152.onnx"
    graph_io.save(resnet("resnet152"), source)  # 230 MB: fixed overheads hardly count
    size_mb = source.stat().st_size / 2**20
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", "validate",
                           str(source)], capture_output=True, text=True, check=True, cwd=root)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["nodes"] == 360  # 155 BN folded
    assert row["increase_mb"] < 3 * size_mb, f"{row['increase_mb'] / size_mb:.2f}x"
