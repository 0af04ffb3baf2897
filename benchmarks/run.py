"""fuser against the peers, in one command.

    python -m benchmarks.run            # the full suite (writes benchmarks/RESULTS.md + PNGs)
    python -m benchmarks.run --quick    # a few small models, a few minutes (writes bench-quick/)

Contestants (``benchmarks.peers``): fuser's exact pipeline, onnxsim, onnxslim, onnxoptimizer
(``fuse_bn_into_conv`` alone, and its default passes) and onnxruntime's own offline
optimization at ORT_ENABLE_BASIC. A peer that is not installed is reported and skipped
(``pip install 'onnx-fuser[bench]'``). Models: fuser's zoo (ResNet-18/50/152, VGG-16 with BN,
SE-ResNet-50, MobileNet, All-CNN-C at 32x32), built in PyTorch and Keras with seeded random
weights and exported with BatchNormalization kept. Measures: see ``benchmarks.measure``.
The low-rank rewrites have their own benchmark (``python -m benchmarks.lowrank``,
benchmarks/LOWRANK.md); ``--lowrank`` re-runs it after this suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import measure, peers, results

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    arch: str
    params: dict
    image_size: int
    num_classes: int = 1000


FULL = [
    Spec("resnet18", "resnet", {"depth": 18}, 224),
    Spec("resnet50", "resnet", {"depth": 50}, 224),
    Spec("resnet152", "resnet", {"depth": 152}, 224),
    Spec("vgg16_bn", "vgg", {"depth": 16}, 224),
    Spec("se_resnet50", "se_resnet", {"depth": 50}, 224),
    Spec("mobilenet", "mobilenet", {"width": 1.0}, 224),
    Spec("allcnn_c", "allcnn_c", {"width": 96}, 32, 10),
]
QUICK = [
    Spec("resnet18", "resnet", {"depth": 18, "width": 32}, 112),
    Spec("mobilenet", "mobilenet", {"width": 0.5}, 112),
    Spec("allcnn_c", "allcnn_c", {"width": 96}, 32, 10),
]
#: One tiny model: what the CI smoke test runs.
SMOKE = [Spec("resnet10_tiny", "resnet", {"depth": 10, "width": 8, "stem_stride": 1}, 32, 10)]
SETS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def export(spec: Spec, framework: str):
    """The zoo model exported to ONNX with BatchNorm kept (seeded random weights)."""
    from fuser.zoo import build

    net = build(spec.arch, framework, image_size=spec.image_size, num_classes=spec.num_classes,
                **spec.params)
    if framework == "torch":
        from fuser.frontends.torch import export as export_torch

        return export_torch(net, (1, 3, spec.image_size, spec.image_size)).model
    from fuser.frontends.keras import export as export_keras

    return export_keras(net).model


def frameworks_available(wanted: list[str], say) -> list[str]:
    found = []
    for framework in wanted:
        try:
            if framework == "torch":
                import torch  # noqa: F401
            else:
                from fuser.frontends.keras import _frameworks

                _frameworks()
            found.append(framework)
        except Exception:  # ImportError or MissingDependencyError
            say(f"{framework} is not installed: pip install 'onnx-fuser[{framework}]'; skipped")
    return found


def run_suite(specs: list[Spec], frameworks: list[str], contestants: list[str] | None,
              folder: Path, *, runs: int, latency_budget: float, rss: bool,
              say=print) -> dict:
    """Measure every contestant on every model; return the results as plain data."""
    present, missing = peers.select(contestants)
    for name, reason in missing.items():
        say(f"{name}: {reason}; skipped")
    rows: list[measure.ModelResult] = []
    largest: tuple[int, Path, str] | None = None
    failed: dict[str, str] = {}
    frameworks = frameworks_available(frameworks, say)
    for spec in specs:
        for framework in frameworks:
            start = time.perf_counter()
            try:
                model = export(spec, framework)
            except Exception as exc:  # reported in RESULTS.md, the other models still run
                failed[f"{spec.name} ({framework})"] = f"{type(exc).__name__}: " \
                    f"{str(exc).strip().splitlines()[0][:160]}"
                say(f"{spec.name} ({framework}): export failed, skipped")
                continue
            say(f"{spec.name} ({framework}): exported in {time.perf_counter() - start:.1f} s")
            row = measure.measure_model(spec.name, framework, model, present, folder,
                                        runs=runs, latency_budget=latency_budget, say=say)
            rows.append(row)
            if largest is None or row.original.params > largest[0]:
                largest = (row.original.params, folder / f"{spec.name}-{framework}.onnx",
                           f"{spec.name} ({framework})")
            del model
    memory = {}
    if rss and largest is not None:
        say(f"peak RSS on {largest[2]}, one subprocess per tool")
        memory = {"model": largest[2],
                  "tools": {c.name: measure.peak_rss(c.name, largest[1]) for c in present}}
    return {"models": [r.to_dict() for r in rows], "missing": missing, "export_failed": failed,
            "contestants": {c.name: {"what": c.what,
                                     "version": peers.version(c.distribution)}
                            for c in present}, "rss": memory}


def environment() -> dict:
    from fuser.runtime.providers import cpu_model, physical_cores

    versions = {name: peers.version(name) for name in (
        "onnx-fuser", "onnx", "onnx-graphsurgeon", "onnxruntime", "numpy", "protobuf", "torch",
        "tensorflow-cpu", "tf2onnx", "onnxsim", "onnxslim", "onnxoptimizer")}
    return {"python": platform.python_version(), "cpu": cpu_model(),
            "cores": physical_cores(), "platform": platform.platform(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": {k: v for k, v in versions.items() if v}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, fewer runs")
    parser.add_argument("--set", choices=sorted(SETS), help="model set (default: full)")
    parser.add_argument("--models", nargs="+", help="only these model names")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "keras"])
    parser.add_argument("--contestants", nargs="+", help=f"of {', '.join(peers.BY_NAME)}")
    parser.add_argument("--runs", type=int, help="optimization runs per tool (default 5; 3)")
    parser.add_argument("--latency-budget", type=float,
                        help="seconds of timed rounds per level (default 6; 2 with --quick)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--out", type=Path, help="where RESULTS.md, PNGs and JSON go "
                        "(default benchmarks/, or bench-quick/ with --quick)")
    parser.add_argument("--keep-models", action="store_true", help="keep the ONNX files")
    parser.add_argument("--lowrank", action="store_true",
                        help="also re-run python -m benchmarks.lowrank (its own tables)")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="only re-write RESULTS.md and the plots from a saved results.json "
                        "(its command and numbers are kept)")
    args = parser.parse_args(argv)
    if args.render is not None:
        out = args.out or args.render.parent
        out.mkdir(parents=True, exist_ok=True)
        results.write(json.loads(args.render.read_text()), out)
        _say(f"wrote {out / 'RESULTS.md'} and plots from {args.render}")
        return 0
    setting = args.set or ("quick" if args.quick else "full")
    specs = [s for s in SETS[setting] if not args.models or s.name in args.models]
    if not specs:
        parser.error(f"no model of set {setting!r} is called {', '.join(args.models)}")
    out = args.out or (Path("bench-quick") if setting != "full" else HERE)
    out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or (5 if setting == "full" else 3)
    budget = args.latency_budget or (6.0 if setting == "full" else 2.0)
    say = _say
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in argv)
    models_dir = Path(tempfile.mkdtemp(prefix="fuser-bench-"))
    try:
        data = run_suite(specs, args.frameworks, args.contestants, models_dir, runs=runs,
                         latency_budget=budget, rss=not args.no_rss, say=say)
    finally:
        if args.keep_models:
            say(f"models kept in {models_dir}")
        else:
            shutil.rmtree(models_dir, ignore_errors=True)
    data.update(command=command, environment=environment(), runs=runs,
                latency_budget=budget, setting=setting)
    (out / "results.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    results.write(data, out)
    say(f"wrote {out / 'RESULTS.md'}, {out / 'results.json'} and plots")
    if args.lowrank:
        return subprocess.call([sys.executable, "-m", "benchmarks.lowrank"]
                               + (["--quick"] if setting != "full" else []))
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
