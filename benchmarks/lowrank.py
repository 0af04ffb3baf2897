"""Low-rank evidence: accuracy vs measured speed-up on trained models, one command.

    python -m benchmarks.lowrank [--quick] [--models digits_vgg ...] [--threads 2]

For each digits model (``digits_vgg``, ``digits_resnet``, ``digits_se_resnet`` and the wider
``digits_vgg_wide`` and ``digits_resnet_wide``), each method and budget: MAC ratio, speed-up
at ORT_ENABLE_ALL measured against the original in the same interleaved run (batch 1 and 64),
accuracy on the held-out and the jittered split, top-1 agreement with the original, search
time. Writes benchmarks/LOWRANK.md and benchmarks/lowrank_pareto.png.

The models are trained here on first use (cached under ~/.cache/fuser) on the training split
less ``VALIDATION`` images set aside first: those are never trained on and are the guard's
held-out calibration samples, so its interval speaks for unseen images as the test split's
do. (The committed zoo trained on the whole training split: a guard calibrated on images a
model fits sees fewer flips than unseen images show.)

Methods: ``asymmetric`` and ``pca`` are the data-aware search (calibration: 128 training
images fit, the 768 set-aside images held out for the guard, unlabeled) under an accuracy,
MAC or latency budget, with the default guard (top-1 agreement drop at most 1 %, upper end of
its 95 % interval, a ladder of choices judged fewest moves first); the table says whether a
run the guard passed lost more than that on the test split. ``spatial`` and ``channel`` are
the weight-only passes at a per-layer MAC fraction (no data, no guard).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

import fuser
from fuser.frontends import torch as torch_frontend
from fuser.runtime import bench
from fuser.runtime import sessions as runtime
from fuser.zoo import digits

#: The harness's models: the committed zoo's architectures and two wider ones (too large to
#: commit), all trained here on the training split less the set-aside images.
MODELS = {
    **digits.ZOO,
    "digits_vgg_wide": ("vgg", {"depth": 11, "width": 64, "stages": 4}, 32, 20),
    "digits_resnet_wide": ("resnet", {"depth": 10, "width": 48, "stem_stride": 1}, 32, 20),
}
CONFIGS = [
    ("asymmetric", "accuracy=0.01"), ("asymmetric", "macs=0.5"), ("asymmetric", "macs=0.35"),
    ("asymmetric", "macs=0.25"),
    ("asymmetric", "latency=0.6"), ("asymmetric", "latency=0.5"),
    ("pca", "macs=0.35"), ("spatial", "0.5"), ("spatial", "0.35"), ("channel", "0.5"),
]
QUICK = [("asymmetric", "accuracy=0.01"), ("asymmetric", "latency=0.5"), ("spatial", "0.5")]
#: Training images set aside before training (stratified, seeded): never trained on, they are
#: the guard's held-out calibration samples.
VALIDATION = 768
#: Training images that fit the factors (the first calibration batches).
FIT = 128
#: The guard's default bound (LowRank.max_accuracy_drop), checked again on the test split.
ALLOWED = 0.01


@dataclasses.dataclass
class Split:
    """The digits data with ``VALIDATION`` training images set aside (``unseen``)."""

    data: digits.Digits  # train_x/train_y: what the models train on
    unseen: np.ndarray


def split(size: int) -> Split:
    """The digits split at ``size``, ``VALIDATION`` training images set aside."""
    from sklearn.model_selection import train_test_split

    data = digits.load(size)
    train_x, unseen, train_y, _ = train_test_split(
        data.train_x, data.train_y, test_size=VALIDATION, random_state=0,
        stratify=data.train_y)
    return Split(dataclasses.replace(data, train_x=train_x, train_y=train_y), unseen)


def trained(name: str, data: digits.Digits):
    """The model trained on ``data.train_x`` (once; cached under ~/.cache/fuser)."""
    import torch

    from fuser.zoo import build

    arch, params, size, epochs = MODELS[name]
    cache = Path.home() / ".cache" / "fuser" / f"{name}-unseen{VALIDATION}.npz"
    if not cache.exists():
        net, metrics = digits.train(arch, params, size, epochs, data=data)
        cache.parent.mkdir(parents=True, exist_ok=True)
        digits.save_weights(net, cache)
        print(f"trained {name} on {len(data.train_x)} images: {metrics}", flush=True)
    net = build(arch, "torch", in_channels=1, num_classes=10, **params)
    with np.load(cache) as arrays:
        net.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
    return net.eval()


def accuracy(model, images, labels) -> float:
    logits = runtime.run(model, {"input": images})["output"]
    return float(np.mean(logits.argmax(1) == labels))


def test_interval(original, candidate, data) -> tuple[float, float]:
    """The 95 % interval of the test accuracy's drop, by fuser's own guard code
    (``metric.judge``, top1 with the test labels: exact binomial)."""
    from fuser.search.metric import judge, resolve

    reference = runtime.run(original, {"input": data.test_x})
    metric = resolve("top1", reference, data.test_y)
    verdict = judge(metric, reference, runtime.run(candidate, {"input": data.test_x}),
                    data.test_y)
    return verdict.interval


def speedups(original, candidate, data, threads: int) -> dict[int, str]:
    """Median-latency ratio at ORT_ENABLE_ALL, interleaved, at batch 1 and 64, until the 95 %
    interval is 5 % wide or 3 s per batch: ``{batch: "1.23 [1.20, 1.26]"}`` (``?`` when
    unresolved); the figures under ``"values"``."""
    feeds = {b: {"input": data.test_x[:b]} for b in (1, 64)}
    result = bench.benchmark({"original": original, "candidate": candidate}, feeds,
                             levels=("all",), provider="cpu", threads=threads, warmup=5,
                             rounds=1000, time_budget=3.0, resolve=0.05)
    out: dict = {"values": {}}
    for t in result.timings:
        if t.model == "candidate":
            low, high = t.speedup_ci
            out[t.batch] = f"{t.speedup:.2f} [{low:.2f}, {high:.2f}]" + (
                "?" if t.resolved is False else "")
            out["values"][t.batch] = t.speedup
    return out


def run_one(model, data: Split, method: str, budget: str, threads: int, batch: int):
    """The compressed model, the search time and the guard's verdict (None: no guard)."""
    start = time.perf_counter()
    if method in ("asymmetric", "pca"):
        images = np.concatenate([data.data.train_x[:FIT], data.unseen])
        calibration = [{"input": images[i:i + 32]} for i in range(0, len(images), 32)]
        lossy = fuser.api.LowRank(calibration, budget=budget, reconstruction=method,
                                  threads=threads, batch=batch, fit_samples=FIT)
        out, report = fuser.optimize(model, lossy=lossy, validate=False)
        guard = report.lowrank
        verdict = "passed" if guard.passed else guard.guard.split(":")[0]
    else:
        out, report = fuser.optimize(model, [f"lowrank-{method}"],
                                     options={f"lowrank-{method}": {"fraction": float(budget)}},
                                     validate=False)
        verdict = None
    return out, time.perf_counter() - start, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+",
                        default=["digits_vgg", "digits_resnet", "digits_se_resnet",
                                 "digits_vgg_wide", "digits_resnet_wide"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1, help="batch the latency budget targets")
    parser.add_argument("--replot", action="store_true",
                        help="only draw lowrank_pareto.png again from LOWRANK.md's table")
    args = parser.parse_args()
    if args.replot:
        plot(points_from_table(Path("benchmarks/LOWRANK.md")))
        return
    configs = QUICK if args.quick else CONFIGS
    rows, points = [], []
    for name in args.models:
        size = MODELS[name][2]
        held = split(size)
        data = held.data
        net = trained(name, data)
        exported = torch_frontend.export(net, (1, 1, size, size)).model  # the user's file
        base, _ = fuser.optimize(exported, validate=False)
        base_acc = (accuracy(base, data.test_x, data.test_y),
                    accuracy(base, data.jitter_x, data.test_y))
        macs = fuser.ir.mac_count(base)
        exact_speed = speedups(exported, base, data, args.threads)
        rows.append(f"| {name} | exact (BN folded) | - | 1.00 | {exact_speed[1]} | "
                    f"{exact_speed[64]} | 1.00 | 1.00 | {base_acc[0]:.2%} | "
                    f"{base_acc[1]:.2%} | 100.00% | - | - | - |")
        print(rows[-1], flush=True)
        for method, budget in configs:
            out, seconds, verdict = run_one(base, held, method, budget, args.threads,
                                            args.batch)
            ratio = macs / max(fuser.ir.mac_count(out), 1)
            versus = speedups(exported, out, data, args.threads)  # the lead
            speed = speedups(base, out, data, args.threads)
            acc = (accuracy(out, data.test_x, data.test_y),
                   accuracy(out, data.jitter_x, data.test_y))
            agree = float(np.mean(
                runtime.run(out, {"input": data.test_x})["output"].argmax(1)
                == runtime.run(base, {"input": data.test_x})["output"].argmax(1)))
            label = budget if "=" in budget else f"fraction {budget}"
            low, high = test_interval(base, out, data)
            over = "-" if verdict != "passed" else (
                ("**YES**" if base_acc[0] - acc[0] > ALLOWED + 1e-9 else "no") +
                f" ({100 * (base_acc[0] - acc[0]):.2f} [{100 * low:.2f}, {100 * high:.2f}])")
            rows.append(f"| {name} | {method} | {label} | {ratio:.2f} | {versus[1]} | "
                        f"{versus[64]} | {speed[1]} | {speed[64]} | {acc[0]:.2%} | "
                        f"{acc[1]:.2%} | {agree:.2%} | "
                        f"{seconds:.1f} s | {verdict or '- (no data)'} | {over} |")
            points.append((name, method, versus["values"][1], versus["values"][64],
                           acc[0] - base_acc[0]))
            print(rows[-1], flush=True)
    write(rows, points, args)


def plot(points) -> None:
    """benchmarks/lowrank_pareto.png: per batch size, each run's speed against the exported
    file and its accuracy change; a colour per model, a marker per method, the legend
    beside the panels (it covered a point inside them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True, layout="constrained")
    markers = {"asymmetric": "o", "pca": "s", "spatial": "^", "channel": "v"}
    models = list(dict.fromkeys(p[0] for p in points))
    for ax, batch in zip(axes, (1, 64), strict=True):
        for m, name in enumerate(models):
            for method, marker in markers.items():
                xs = [p[2 if batch == 1 else 3] for p in points if p[0] == name and p[1] == method]
                ys = [100 * p[4] for p in points if p[0] == name and p[1] == method]
                if xs:
                    ax.scatter(xs, ys, marker=marker, color=f"C{m}", s=45, alpha=0.85,
                               label=f"{name} {method}" if batch == 1 else None)
        ax.axhline(-1, color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(2, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel(f"speed against the exported file, ORT_ENABLE_ALL, batch {batch}")
        ax.set_title(f"batch {batch}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy change (points), held-out digits")
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    fig.savefig("benchmarks/lowrank_pareto.png", dpi=110)
    plt.close(fig)


def points_from_table(path: Path) -> list[tuple]:
    """The plot's points read back from LOWRANK.md's table (``--replot``): each run's speed
    against the original at batch 1 and 64, and its held-out accuracy less the exact row's."""
    points, base = [], {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 14 or not cells[8].endswith("%"):
            continue
        name, method, accuracy = cells[0], cells[1], float(cells[8].rstrip("%")) / 100
        if method.startswith("exact"):
            base[name] = accuracy
        elif cells[4] != "-" and name in base:
            points.append((name, method, float(cells[4].split()[0]),
                           float(cells[5].split()[0]), accuracy - base[name]))
    return points


def write(rows, points, args) -> None:
    plot(points)
    from benchmarks.realzoo.lowrank import existing_block

    command = "python -m benchmarks.lowrank" + (" --quick" if args.quick else "")
    path = Path("benchmarks/LOWRANK.md")
    # The real-model block belongs to python -m benchmarks.realzoo.lowrank: kept as it is.
    block = existing_block(path.read_text()) if path.exists() else ""
    path.write_text(
        "# Low-rank rewrites on trained models\n\n"
        f"`{command}` on {platform.processor() or platform.machine()}, {date.today()}, "
        f"onnxruntime CPU, {args.threads} threads. **Speed against the original** (the "
        "torch export with BatchNorm kept: the file a user brings) leads, then the speed-up "
        "against fuser's exact output (BN folded, the search's starting point): each a "
        "median-latency ratio at ORT_ENABLE_ALL with its 95 % interval, timed interleaved "
        "until the interval is 5 % wide or 3 s per batch (`?`: unresolved). The `exact` "
        "row is fuser's exact output against the export. Accuracy on the digits held-out "
        "and jittered splits; agreement = top-1 agreement with the exact output on the "
        "held-out split. No fine-tuning. The "
        "search's guard (default: agreement drop within 1 point, the upper end of its "
        "95 % interval, a ladder of choices judged fewest moves first until one is refused, "
        f"on {VALIDATION} held-out calibration images) is in `guard`; `test drop > 1 pt?` "
        "asks whether a run the guard passed lost more than that on the test split, which "
        "the search never saw, with the accuracy drop there and its 95 % interval in points "
        "(exact binomial, fuser's `metric.judge`). Every model here is trained by this "
        f"harness on the training split less {VALIDATION} images set aside first: those are "
        f"the guard's held-out images, unseen like the test split's ({FIT} training images "
        "fit the factors). A guard calibrated on images the model was trained on sees fewer "
        "flips than unseen images show.\n\n"
        "| model | method | budget | MAC ratio | **vs original b1** | **vs original b64** | "
        "vs exact b1 | vs exact b64 | held-out | jittered | agreement | search | guard | "
        "test drop > 1 pt? |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n![Pareto](lowrank_pareto.png)\n"
        + (f"\n{block}\n" if block else ""))


if __name__ == "__main__":
    main()
