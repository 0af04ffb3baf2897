"""Handlers of the ``onnx-fuser`` subcommands: arguments in, API calls, text out, exit code.

Every handler prints a human summary on stdout (on stderr with ``--json``, so stdout stays
pure JSON) and ends with a PASSED or FAILED line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import onnx

from fuser.errors import FuserError
from fuser.report import timings_text

LEVELS = {"both": ("disable", "all"), "disable": ("disable",), "basic": ("basic",),
          "all": ("all",)}


def optimize(args: argparse.Namespace) -> int:
    from fuser import api
    from fuser import ir as graph
    from fuser.runtime import inputs

    source, target = Path(args.model), Path(args.output)
    if source.exists() and target.exists() and target.resolve() == source.resolve():
        raise FuserError(f"{target}: output path is the input path; the input is never "
                         "overwritten")
    if not target.parent.is_dir():
        raise FuserError(f"{target}: folder {target.parent} does not exist")
    _refuse_overwriting_the_input(source, target)
    started = time.perf_counter()
    options = {"fold-batchnorm": {"clone_shared": False}} if args.no_clone_shared else None
    passes = _split([args.passes]) if args.passes else None
    model, report = api.optimize(
        source, passes, skip=_split(args.skip), options=options, max_steps=args.max_steps,
        check_each=args.check_each, dump_dir=args.dump_dir,
        validate=False if args.no_validate else _validation(args),
        on_failure="rollback" if args.rollback else "bisect", lossy=_lossy(args, source),
        input_shapes=inputs.parse_input_shapes(args.input_shape) or None,
        static_shapes=args.static_shapes)
    out = sys.stderr if args.json else sys.stdout
    written = report.passed or args.force
    if written:
        if not args.no_bench:  # before saving: a bad input found here leaves no output file
            notes = list(report.notes)  # _time_optimized may add one
            report = dataclasses.replace(
                report, timings=_time_optimized(args, source, model, notes), notes=notes)
        # Everything that can fail runs before the model is written: the report's forms too.
        report.to_text()
        _report_text(args, report.to_dict(), report.to_markdown())
        save_start = time.perf_counter()
        graph.save(model, target, external_data=True if args.external_data else None)
        report = dataclasses.replace(
            report, seconds={**report.seconds, "save": time.perf_counter() - save_start})
    print(report.to_text(), file=out)
    _emit(args, report.to_dict(), report.to_markdown(), out)
    elapsed = time.perf_counter() - started
    summary = (f"{report.rewrites()} rewrites, nodes {report.before.nodes} -> "
               f"{report.after.nodes}, BatchNormalization left "
               f"{report.after.ops.get('BatchNormalization', 0)}")
    if report.validation is not None:
        worst = max((o.max_abs for o in report.validation.outputs), default=0.0)
        summary += f", max diff {worst:.1e}"
    else:
        summary += ", not validated" + ("" if args.no_validate else
                                        " (onnxruntime cannot run the input: see the notes)")
    if not report.passed:
        culprit = report.culprits[0]["name"] if report.culprits else "unknown"
        print(f"{'wrote' if written else 'did not write'} {target}", file=out)
        print(f"FAILED | {elapsed:.2f}s | validation failed; culprit pass: {culprit} "
              f"(try --rollback or --skip {culprit})", file=out)
        return 1
    print(f"wrote {target}", file=out)
    print(f"PASSED | {elapsed:.2f}s | {summary}", file=out)
    return 0


def _refuse_overwriting_the_input(source: Path, target: Path) -> None:
    """The output and its data file (OUTPUT.data) must not be a file the input reads: its
    external data, say (only looked up when one of them already exists)."""
    from fuser import ir as graph

    written = [p for p in (target, target.with_name(f"{target.name}.data")) if p.exists()]
    if not written or not source.is_file():
        return
    try:
        read = graph.referenced_files(source)
    except Exception:  # noqa: BLE001  (an unreadable input is refused by load, with its message)
        return
    for path in written:
        for used in read:
            if used.exists() and path.samefile(used):
                raise FuserError(f"{path}: the input {source} reads this file; the input is "
                                 "never overwritten (choose another output name)")


def _time_optimized(args: argparse.Namespace, source: Path, model: onnx.ModelProto,
                    notes: list[str]) -> dict | None:
    """Time the original and the result; ``None`` (and a note) when onnxruntime cannot run
    the original (a custom-domain op, say)."""
    from fuser import ir as graph
    from fuser.runtime.sessions import RuntimeRefusedError

    original = graph.load(source)
    shapes = _shapes(args, original, args.batch)
    try:
        return _benchmark(args, {"original": original, "optimized": model},
                          {args.batch: _one_batch(original, shapes, args.seed)})
    except RuntimeRefusedError as exc:
        notes.append(f"not timed: onnxruntime cannot run {source} ({exc.reason})")
        return None


def validate(args: argparse.Namespace) -> int:
    from fuser import ir as graph
    from fuser.runtime import inputs
    from fuser.runtime import validate as validation

    reference, candidate = graph.load(args.reference), graph.load(args.candidate)
    started = time.perf_counter()
    shapes = inputs.resolve_shapes(reference, inputs.parse_input_shapes(args.input_shape),
                                   args.batch)
    settings = _validation(args)
    result = validation.validate(reference, candidate, inputs=args.inputs, input_shapes=shapes,
                               batch=args.batch, count=args.batches, seed=args.seed,
                               atol=settings.atol, rtol=settings.rtol,
                               labels=(args.reference, args.candidate))
    out = sys.stderr if args.json else sys.stdout
    print(result.to_text(), file=out)
    _emit(args, result.to_dict(), result.to_text(), out)
    elapsed = time.perf_counter() - started
    if result.passed:
        worst = max((o.max_abs for o in result.outputs), default=0.0)
        print(f"PASSED | {elapsed:.2f}s | {len(result.outputs)} output(s), max abs diff "
              f"{worst:.2e}", file=out)
        return 0
    print(f"FAILED | {elapsed:.2f}s | {'; '.join(result.failures)}", file=out)
    return 1


def bench(args: argparse.Namespace) -> int:
    from fuser import ir as graph

    if len(args.models) > 2:
        raise FuserError("bench takes one or two models")
    models = {}
    for path in args.models:
        name = Path(path).name
        models[name if name not in models else f"{name} (2)"] = graph.load(path)
    reference = next(iter(models.values()))
    try:
        batches = [int(b) for b in _split([args.batch])]
    except ValueError:
        raise FuserError(f"--batch {args.batch!r}: expected sizes like 1,8,64") from None
    feeds = {}
    for size in batches:
        shapes = _shapes(args, reference, size)
        first = next(iter(shapes.items()), None)
        if first and first[1] and first[1][0] != size:
            raise FuserError(f"--batch {size}: input '{first[0]}' has a fixed first dimension "
                             f"{first[1][0]}")
        feeds[size] = _one_batch(reference, shapes, args.seed)
    started = time.perf_counter()
    timings = _benchmark(args, models, feeds)
    timings["models"] = {name: _model_size(model) for name, model in models.items()}
    out = sys.stderr if args.json else sys.stdout
    print(timings_text(timings), file=out)
    for name, size in timings["models"].items():
        print(f"  {name}: {size['nodes']} nodes, {size['params']:,} params, "
              f"{_macs(size['macs'])} MACs per sample", file=out)
    _emit(args, timings, timings_text(timings, markdown=True), out)
    ratios = [t for t in timings["timings"] if t.get("speedup") is not None
              and t["model"] != timings["timings"][0]["model"]]
    figure = ", ".join(f"{t['level']} b{t['batch']}: {t['speedup']:.3f}x" for t in ratios) \
        or f"median {timings['timings'][0]['stats']['median_ms']:.3f} ms"
    print(f"PASSED | {time.perf_counter() - started:.2f}s | {figure}", file=out)
    return 0


def passes(args: argparse.Namespace) -> int:
    from fuser.passes import DEFAULT_PIPELINE, REGISTRY

    rows = [{"name": name, "lossy": cls.lossy, "default": name in DEFAULT_PIPELINE,
             "summary": cls.summary()} for name, cls in sorted(REGISTRY.items())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        flags = "default" if r["default"] else ("lossy" if r["lossy"] else "opt-in")
        print(f"{r['name']:<{width}}  {flags:<7}  {r['summary']}")
    print(f"default pipeline: {', '.join(DEFAULT_PIPELINE)}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from fuser.cli import demo

    setting = "quick" if args.quick else "full" if args.full else "default"
    started = time.perf_counter()
    folder = Path(args.output_dir)
    print(f"onnx-fuser demo ({setting}): export, fold, validate and time the zoo; "
          f"writing to {folder}/", file=sys.stderr)
    rows = demo.run(folder, setting, tuple(_split([args.frameworks])), args.time_budget)
    if not rows:
        raise FuserError("no model could be built: install 'onnx-fuser[torch]' or '[keras]'")
    print(demo.table(rows))
    print(f"wrote {folder / 'demo.md'} and {folder / 'demo.json'}")
    failed = [f"{r['model']} ({r['framework']})" for r in rows if not r["passed"]]
    if failed:
        print(f"FAILED | {time.perf_counter() - started:.0f}s | validation failed: "
              f"{', '.join(failed)}")
        return 1
    layers = sum(int(r["BN"].split(" -> ")[0]) for r in rows)
    left = sum(int(r["BN"].split(" -> ")[1]) for r in rows)
    if left:
        print("BatchNorms left, with the reasons the passes gave:")
        print("\n".join(demo.explain_left(rows)))
    print(f"PASSED | {time.perf_counter() - started:.0f}s | {len(rows)} models, "
          f"{layers - left} of {layers} BatchNorms folded"
          + (f" ({left} left: the passes' reasons above)" if left else ""))
    return 0


def export(args: argparse.Namespace) -> int:
    from fuser.frontends import load_spec

    target = Path(args.output)
    if not target.parent.is_dir():
        raise FuserError(f"{target}: folder {target.parent} does not exist")
    started = time.perf_counter()
    from fuser.runtime import inputs

    model, example = load_spec(args.framework, args.spec)
    shapes = inputs.parse_input_shapes(args.input_shape)
    if args.framework == "torch":
        from fuser.frontends.torch import export as export_torch

        if example is None:
            if len(shapes) != 1:
                raise FuserError("torch export needs the example input's shape: "
                                 "--input-shape input:1x3x224x224")
            example = next(iter(shapes.values()))
        result = export_torch(model, example, target, opset=args.opset,
                              dynamic_batch=not args.static_batch,
                              keep_batchnorm=not args.fold_in_exporter)
    else:
        from fuser.frontends.keras import export as export_keras

        shape = next(iter(shapes.values()))[1:] if len(shapes) == 1 else None
        result = export_keras(model, target, opset=args.opset,
                              keep_batchnorm=not args.fold_in_exporter, nchw=args.nchw,
                              input_shape=shape)
    print(result.summary())
    print(f"wrote {target}")
    ok = result.max_abs_diff is None or result.max_abs_diff <= 1e-4 * max(result.output_scale,
                                                                           1.0)
    print(f"{'PASSED' if ok else 'FAILED'} | {time.perf_counter() - started:.2f}s | "
          f"{len(result.model.graph.node)} nodes, max abs diff vs {args.framework} "
          f"{result.max_abs_diff:.1e}")
    return 0 if ok else 1


# ---------------------------------------------------------------------------- helpers


def quiet_onnxruntime(verbose: int) -> None:
    """Keep onnxruntime's own logger (process-wide) to errors unless ``-v`` asked for more."""
    from fuser.runtime import sessions as runtime

    if verbose < 1:
        runtime.set_log_severity(4 if verbose < 0 else 3)
    else:
        runtime.set_log_severity(1)


def _model_size(model: onnx.ModelProto) -> dict[str, Any]:
    from fuser import ir as graph

    return {"nodes": len(model.graph.node), "params": graph.param_count(model),
            "macs": graph.mac_count(model)}


def _macs(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:.2f}M"


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _validation(args: argparse.Namespace):
    from fuser import api
    from fuser.runtime import inputs
    from fuser.runtime import validate as validation

    return api.Validation(
        inputs=args.inputs, input_shapes=inputs.parse_input_shapes(args.input_shape),
        batch=args.batch, count=args.batches, seed=args.seed,
        atol=validation.parse_tolerances(args.atol, validation.EXACT_ATOL),
        rtol=validation.parse_tolerances(args.rtol, validation.EXACT_RTOL))


def _lossy(args: argparse.Namespace, source: Path):
    """The low-rank stage's settings, with calibration batches loaded from ``--calibration``."""
    from fuser import api
    from fuser import ir as graph
    from fuser.passes.lowrank.search import parse_budget
    from fuser.runtime import inputs

    if args.lossy is None:
        for flag in ("calibration", "max_accuracy_drop"):
            if getattr(args, flag) is not None:
                raise FuserError(f"--{flag.replace('_', '-')} needs --lossy lowrank")
        return None
    if not args.calibration:
        raise FuserError("--lossy lowrank needs --calibration DATA (unlabeled inputs)")
    parse_budget(args.budget)
    model = graph.load(source)
    shapes = inputs.resolve_shapes(model, inputs.parse_input_shapes(args.input_shape),
                                   args.calibration_batch)
    count = max(2, -(-args.calibration_samples // args.calibration_batch))
    batches = inputs.load_batches(args.calibration, model, shapes, max_batches=count,
                                  remainder=False)
    from fuser.runtime.providers import physical_cores

    drop = 0.01 if args.max_accuracy_drop is None else args.max_accuracy_drop
    labels = _calibration_labels(args.calibration, sum(len(next(iter(b.values())))
                                                      for b in batches))
    return api.LowRank(batches, budget=args.budget, max_accuracy_drop=drop, labels=labels,
                       reconstruction=args.reconstruction,
                       threads=args.threads or physical_cores())


def _calibration_labels(path: str, count: int):
    """A ``labels`` array stored in a calibration ``.npz`` (one per sample), if any."""
    import numpy as np

    if not str(path).endswith(".npz"):
        return None
    with np.load(path) as data:
        if "labels" not in data.files:
            return None
        labels = data["labels"]
    if labels.ndim != 1 or len(labels) < count:
        raise FuserError(f"{path}: 'labels' must hold one label per sample ({count} used)")
    return labels[:count]


def _shapes(args: argparse.Namespace, model: onnx.ModelProto, batch: int) -> dict:
    from fuser.runtime import inputs

    return inputs.resolve_shapes(model, inputs.parse_input_shapes(args.input_shape), batch)


def _one_batch(model: onnx.ModelProto, shapes: dict, seed: int) -> dict:
    from fuser.runtime import inputs

    return inputs.random_batches(model, shapes, 1, seed)[0]


def _benchmark(args: argparse.Namespace, models: dict, feeds: dict) -> dict[str, Any]:
    from fuser.runtime import bench

    result = bench.benchmark(models, feeds, levels=LEVELS[args.level], provider=args.provider,
                             threads=args.threads, warmup=args.warmup, rounds=args.rounds,
                             time_budget=args.time_budget, cuda_graph=args.cuda_graph)
    return result.to_dict()


def _emit(args: argparse.Namespace, data: dict, markdown: str, out) -> None:
    """``--json`` prints ``data``; ``--report FILE`` writes JSON, or markdown for ``.md``."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    text = _report_text(args, data, markdown)
    if text is not None:
        write_text_atomic(Path(args.report), text)
        print(f"report: {args.report}", file=out)


def _report_text(args: argparse.Namespace, data: dict, markdown: str) -> str | None:
    """What ``--report FILE`` writes (None without it); raises, before anything is written,
    when the report cannot be made or its folder does not exist."""
    if not args.report:
        return None
    path = Path(args.report)
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    if path.suffix.lower() in (".md", ".markdown"):
        return markdown
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), like the models: the
    temporary file is created with that mode, not ``mkstemp``'s 0600.
    """
    if not path.parent.is_dir():
        raise FuserError(f"{path}: folder {path.parent} does not exist")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
