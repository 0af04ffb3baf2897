"""``onnx-fuser optimize``: run the exact pipeline (or chosen passes), validate and time the
result, write it and its report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import onnx

from fuser import api
from fuser import ir as graph_io
from fuser.cli import lossy_options, options
from fuser.errors import FuserError
from fuser.report import Report
from fuser.report.html import report_html
from fuser.report.text import lowrank_summary, stage_name

RUNS_MODELS = True


def add_arguments(opt: argparse.ArgumentParser) -> None:
    """The arguments of ``onnx-fuser optimize``."""
    opt.add_argument("model", help="input .onnx file (never modified)")
    opt.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    opt.add_argument("--passes", help="comma-separated pass names, in order (default: the "
                                      "exact pipeline; see 'onnx-fuser passes')")
    opt.add_argument("--skip", action="append", default=[],
                     help="leave this pass out (repeatable, or comma-separated)")
    opt.add_argument("--no-clone-shared", action="store_true",
                     help="skip folds into weights shared with other nodes instead of cloning")
    opt.add_argument("--max-steps", type=options.positive, default=4,
                     help="sweeps of the pipeline at most")
    opt.add_argument("--check-each", action="store_true",
                     help="run the ONNX checker after every pass")
    opt.add_argument("--dump-dir", help="write the model after every pass that changed it")
    opt.add_argument("--no-validate", action="store_true", help="skip the numeric validation")
    opt.add_argument("--force", action="store_true",
                     help="write the output even when validation fails (exit code stays 1)")
    opt.add_argument("--rollback", action="store_true",
                     help="when validation fails, drop the culprit pass(es) and keep the rest")
    opt.add_argument("--no-bench", action="store_true",
                     help="skip the timing (and so the check that the result is not slower "
                          "than the input)")
    opt.add_argument("--allow-slower", action="store_true",
                     help="keep passes that make the result slower than the input at the "
                          "deploy level (default: find them by bisection and roll them back)")
    opt.add_argument("--bench-batch", metavar="SIZES",
                     help="batch sizes to time for a dynamic first dimension, e.g. 1,64 "
                          "(default: --batch)")
    opt.add_argument("--static-shapes", action="store_true",
                     help="write the fixed input shapes (--input-shape; a symbolic first dim "
                          "is --batch) into the output, so that everything computed from them "
                          "folds; the output then runs at those shapes only (default: the "
                          "output keeps its symbolic dims)")
    lossy_options.add_lossy(opt)
    opt.add_argument("--external-data", action="store_true",
                     help="write weights to OUTPUT.data, or to a fresh OUTPUT.<hex>.data when "
                          "the OUTPUT already there reads that one (automatic past 2 GB)")
    options.add_inputs(opt)
    options.add_tolerances(opt)
    options.add_timing(opt, batch=False)
    options.add_output(opt)
    opt.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.model), Path(args.output)
    _check_paths(source, target)
    options.report_kind(args, html=True)
    if args.dump_dir and Path(args.dump_dir).exists() and not Path(args.dump_dir).is_dir():
        raise FuserError(f"--dump-dir {args.dump_dir}: is a file, not a folder")
    started = time.perf_counter()
    model, report = _optimize(args, source)
    out = options.human(args)
    written = report.passed or args.force
    if written:
        # Written beside the target, then renamed into place once everything that can fail
        # has run: the report's forms, rendered once, with the write's seconds.
        with graph_io.writing(model, target,
                              external_data=True if args.external_data else None) as seconds:
            report = dataclasses.replace(report, seconds={**report.seconds, "save": seconds})
            text, data, report_file, (status, figures) = _render(report, args)
    else:
        text, data, report_file, (status, figures) = _render(report, args)
    print(text, file=out)
    options.emit(args, data, out, report_file)
    elapsed = time.perf_counter() - started
    print(f"{'wrote' if written else 'did not write'} {target}", file=out)
    print(f"{status} | {elapsed:.2f}s | {figures}", file=out)
    return 0 if report.passed else 1


def _render(report: Report, args: argparse.Namespace
            ) -> tuple[str, dict, str | None, tuple[str, str]]:
    """The report's forms, each rendered once from the one record: the text, the JSON data,
    what ``--report FILE`` writes (markdown, JSON or the HTML page), and the last line's
    verdict and figures."""
    last = _last_line(args, report)
    data = report.to_dict()
    report_file = options.report_file(
        args, data, report.to_markdown,
        lambda: report_html(report, f"{last[0]} | {last[1]}"))
    return report.to_text(), data, report_file, last


def _last_line(args: argparse.Namespace, report: Report) -> tuple[str, str]:
    """The last line's verdict (``Report.verdict``) and figures: why it failed, or the
    summary."""
    verdict = report.verdict
    return verdict, _failure(report) if verdict == "FAILED" else _summary(args, report)


def _optimize(args: argparse.Namespace, source: Path) -> tuple[onnx.ModelProto, Report]:
    """``fuser.api.optimize`` with the settings the arguments give."""
    config = {"fold-batchnorm": {"clone_shared": False}} if args.no_clone_shared else None
    passes = options.split([args.passes]) if args.passes else None
    return api.optimize(
        source, passes, skip=options.split(args.skip), options=config,
        max_steps=args.max_steps, check_each=args.check_each, dump_dir=args.dump_dir,
        validate=False if args.no_validate else options.validation_settings(args),
        on_failure="rollback" if args.rollback else "bisect",
        lossy=lossy_options.lowrank(args), input_shapes=options.input_shapes(args) or None,
        static_shapes=args.static_shapes, timing=_timing(args))


def _timing(args: argparse.Namespace) -> api.Timing | None:
    """The timing group with the batch sizes to time; None with ``--no-bench``."""
    if args.no_bench:
        return None
    sizes = options.split([args.bench_batch]) if args.bench_batch else [str(args.batch)]
    try:
        batches = tuple(int(size) for size in sizes)
    except ValueError:
        raise FuserError(f"--bench-batch {args.bench_batch!r}: expected sizes like 1,64") \
            from None
    if any(b < 1 for b in batches):
        raise FuserError(f"--bench-batch {args.bench_batch!r}: batch sizes must be >= 1")
    return dataclasses.replace(options.timing(args), batches=batches,
                               allow_slower=args.allow_slower, seed=args.seed)


def _failure(report: Report) -> str:
    """Why the run failed: the exact stage's culprit, or the low-rank guard's verdict."""
    if report.validation is not None and not report.validation.passed:
        culprit = report.culprits[0].name if report.culprits else "unknown"
        return (f"validation failed; culprit pass: {culprit} (try --rollback or --skip "
                f"{culprit})")
    lowrank = report.lowrank
    record = lowrank.to_dict()
    return f"{stage_name(record)} guard: {lowrank.guard} | {lowrank_summary(record)}"


def _summary(args: argparse.Namespace, report: Report) -> str:
    """The key figures of the PASSED line, led by the delivered model's speed against the
    input at the deploy level; for a lossy run, the delivered model's (the metric, the output
    error, MACs), not the exact stage's."""
    if report.speed is not None:
        lead = report.speed.short()
        if report.speed.rolled_back:
            lead += f" (rolled back for speed: {', '.join(report.speed.rolled_back)})"
        return f"{lead} | {_figures(args, report)}"
    return ("not timed" if args.no_bench else "not timed (see the notes)") + \
        f" | {_figures(args, report)}"


def _figures(args: argparse.Namespace, report: Report) -> str:
    """The rewrites and the output difference, or the low-rank figures."""
    if report.lowrank is not None:
        timings = report.timings.to_dict() if report.timings else None
        record = report.lowrank.to_dict()
        return f"{stage_name(record)}: {lowrank_summary(record, timings)}"
    summary = (f"{report.rewrites()} rewrites, nodes {report.before.nodes} -> "
               f"{report.after.nodes}, BatchNormalization left "
               f"{report.after.ops.get('BatchNormalization', 0)}")
    if report.validation is not None:
        worst = max((o.max_abs for o in report.validation.outputs), default=0.0)
        return summary + f", max diff {worst:.1e}"
    return summary + ", not validated" + ("" if args.no_validate else
                                          " (onnxruntime cannot run the input: see the notes)")


def _check_paths(source: Path, target: Path) -> None:
    """Refuse an output that is the input, or in a folder that does not exist."""
    if source.exists() and target.exists() and target.resolve() == source.resolve():
        raise FuserError(f"{target}: output path is the input path; the input is never "
                         "overwritten")
    if not target.parent.is_dir():
        raise FuserError(f"{target}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):  # before the work, not after it
        raise FuserError(f"{target}: folder {target.parent} is not writable")
    _refuse_overwriting_the_input(source, target)


def _refuse_overwriting_the_input(source: Path, target: Path) -> None:
    """The output and the data files a save replaces (OUTPUT.data, the old output's data)
    must not be a file the input reads: its external data, say (only looked up when one of
    them already exists)."""
    written = graph_io.replaced_by_save(target)
    if not written or not source.is_file():
        return
    try:
        read = graph_io.referenced_files(source)
    except Exception:  # noqa: BLE001  (an unreadable input is refused by load, with its message)
        return
    for path in written:
        for used in read:
            if used.exists() and path.samefile(used):
                raise FuserError(f"{path}: the input {source} reads this file; the input is "
                                 "never overwritten (choose another output name)")
