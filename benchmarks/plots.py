"""The peer benchmark's plots: optimization time per model and tool, and latency speed-ups."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.results import _label, _median, _order


def plots(data: dict, out: Path) -> list[Path]:
    """results_time.png (optimization time per model and tool, log scale) and
    results_latency.png (speed-up at both levels with intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _order(data["contestants"])
    labels = [_label(r) for r in data["models"]]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(labels)), 4.5))
    for i, name in enumerate(names):
        values = [_median(r["entries"][name]["seconds"]) if name in r["entries"]
                  and r["entries"][name]["seconds"] else math.nan for r in data["models"]]
        ax.bar([j + i * width for j in range(len(labels))], values, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("optimization wall time, s (median, log)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=30,
                  ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title(data["command"], fontsize=7)
    fig.tight_layout()
    paths = [out / "results_time.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    # one panel per level, stacked: the models side by side at a readable size
    fig, axes = plt.subplots(2, 1, figsize=(min(14, max(8, 0.55 * len(labels) + 3)), 8.5),
                             sharex=True, layout="constrained")
    for ax, level in zip(axes, ("disable", "all"), strict=True):
        for i, name in enumerate(names):
            lats = [r["entries"].get(name, {}).get("latency", {}).get(level)
                    for r in data["models"]]
            xs = [j + i * width for j in range(len(labels))]
            ys = [lat["speedup"] if lat else math.nan for lat in lats]
            err = [[lat["speedup"] - lat["low"] if lat else 0 for lat in lats],
                   [lat["high"] - lat["speedup"] if lat else 0 for lat in lats]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", ms=5, capsize=2,
                        label=name if level == "disable" else None)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"ORT_{'DISABLE_ALL' if level == 'disable' else 'ENABLE_ALL'}",
                     fontsize=11)
        ax.set_ylabel("speed-up vs original\n(95 % interval)", fontsize=10)
        ax.tick_params(labelsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=35,
                       ha="right", fontsize=10)
    fig.legend(loc="outside upper center", ncol=min(len(names), 6), fontsize=10,
               frameon=False, title=data["command"], title_fontsize=8)
    paths.append(out / "results_latency.png")
    fig.savefig(paths[1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths
