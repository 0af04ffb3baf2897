"""How the exact pipeline's time grows with the node count: Conv+BN+Relu chains.

    python -m benchmarks.scale [--nodes 10000 20000 40000 100000] [--out benchmarks]

Each chain (``chain``: 4 channels, 8x8 maps, 3x3 convs with BatchNormalization kept, so a
third of its nodes fold away) is optimized by ``onnx-fuser optimize MODEL -o OUT --no-bench``
in a process of its own, as a user runs it: load, checker and shape inference, passes,
export, validation on three random batches against the original (onnxruntime, optimizations
off), save. The table gives the command's wall time and the phases it reports; the figure
plots seconds per node against nodes (flat for linear growth). Writes ``SCALE.md`` (the
block between ``<!-- scale -->`` and ``<!-- /scale -->``), ``scale.json`` and ``scale.png``
in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fuser.about import __version__

START, END = "<!-- scale -->", "<!-- /scale -->"
CHANNELS, SIDE = 4, 8


def chain(nodes: int, seed: int = 0) -> onnx.ModelProto:
    """A chain of ``nodes // 3`` Conv -> BatchNormalization -> Relu blocks (trained-like
    statistics: the output neither vanishes nor explodes)."""
    rng = np.random.default_rng(seed)
    graph, weights, x = [], [], "x"
    for i in range(nodes // 3):
        w = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.15
        stats = {"s": 1 + 0.1 * rng.standard_normal(CHANNELS),
                 "b": 0.1 * rng.standard_normal(CHANNELS),
                 "m": 0.1 * rng.standard_normal(CHANNELS), "v": 1 + 0.1 * rng.random(CHANNELS)}
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        weights += [numpy_helper.from_array(v.astype(np.float32), f"{k}{i}")
                    for k, v in stats.items()]
        graph += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}",
                                   pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                  helper.make_node("BatchNormalization", [f"c{i}", f"s{i}", f"b{i}", f"m{i}",
                                                          f"v{i}"], [f"n{i}"], name=f"bn{i}"),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    shape = [1, CHANNELS, SIDE, SIDE]
    model = helper.make_graph(graph, "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
                              weights)
    return helper.make_model(model, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def measure(nodes: int, folder: Path) -> dict:
    """One chain through ``onnx-fuser optimize --no-bench``: wall seconds, the phases the
    command printed, its last line."""
    source, target = folder / f"chain{nodes}.onnx", folder / f"chain{nodes}.opt.onnx"
    onnx.save(chain(nodes), source)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fuser", "optimize", str(source), "-o",
                           str(target), "--no-bench"], capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    phases = {}
    for line in done.stdout.splitlines():
        if line.strip().startswith("time:"):
            phases = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", line)}
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"nodes": nodes, "wall": wall, "phases": phases, "exit": done.returncode,
            "last_line": last[:160]}


def table(rows: list[dict]) -> str:
    """The markdown table of the rows."""
    keys = ("analyze", "validate", "passes", "export", "check")
    lines = ["| nodes | wall s | s per 1k nodes | " + " | ".join(keys) + " | exit |",
             "|--:|--:|--:|" + "--:|" * len(keys) + "--:|"]
    for r in rows:
        phases = " | ".join(f"{r['phases'].get(k, float('nan')):.1f}" for k in keys)
        lines.append(f"| {r['nodes']:,} | {r['wall']:.1f} | {1000 * r['wall'] / r['nodes']:.2f} "
                     f"| {phases} | {r['exit']} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Seconds per 1,000 nodes against nodes (log axis): flat where time grows linearly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=120)
    nodes = [r["nodes"] for r in rows]
    for key in ("validate", "passes"):
        axis.plot(nodes, [1000 * r["phases"].get(key, np.nan) / r["nodes"] for r in rows],
                  marker="o", label=key)
    axis.plot(nodes, [1000 * r["wall"] / r["nodes"] for r in rows], marker="s",
              label="whole command")
    axis.set_xscale("log")
    axis.set_xlabel("nodes (Conv+BN+Relu chain)")
    axis.set_ylabel("seconds per 1,000 nodes")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10000, 20000, 40000, 100000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fuser-scale-") as folder:
        for nodes in args.nodes:
            print(f"{nodes} nodes ...", file=sys.stderr, flush=True)
            rows.append(measure(nodes, Path(folder)))
            print(f"  {rows[-1]['wall']:.1f} s: {rows[-1]['last_line']}", file=sys.stderr)
    header = (f"Command: `python -m benchmarks.scale --nodes {' '.join(map(str, args.nodes))}`, "
              f"{time.strftime('%Y-%m-%d')}, onnx-fuser {__version__}; {platform.machine()}, "
              f"Python {platform.python_version()}.")
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out / "scale.png")
    markdown = args.out / "SCALE.md"
    text = markdown.read_text() if markdown.exists() else f"# Scale\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    markdown.write_text(f"{head}{START}\n\n{header}\n\n{table(rows)}\n\n![](scale.png)\n\n"
                        f"{END}{tail}")
    print(f"wrote {markdown}, scale.json and scale.png")


if __name__ == "__main__":
    main()
