"""The settings of an ``optimize`` run (``Validation``, ``LowRank``, and ``Config``, all of
``optimize``'s arguments) and what they resolve to on a model: the passes to run, the fixed
input shapes, the validation batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from fuser.errors import FuserError
from fuser.passes import DEFAULT_PIPELINE, REGISTRY, get_pass
from fuser.passes.base import Pass
from fuser.runtime import bench as benchmarking
from fuser.runtime import inputs as inputs_io
from fuser.runtime import validate as validation
from fuser.search.config import FIT_SAMPLES, SEARCH_TIME, Search


@dataclasses.dataclass
class Validation:
    """How ``optimize`` validates its result (see ``fuser.runtime.validate.validate``)."""

    inputs: str | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    batch: int = 1
    count: int = 3
    seed: int = 0
    atol: validation.Tolerance = validation.EXACT_ATOL
    rtol: validation.Tolerance = validation.EXACT_RTOL


@dataclasses.dataclass
class LowRank:
    """The lossy stage of ``optimize`` (``fuser.search.lossy``): low-rank rewrites
    (``fuser.search.search``), INT8 (``fuser.search.int8``; ``methods=("int8",)``), or both
    (``methods=("lowrank", "int8")``), judged by one guard. ``Lossy`` is the same class.

    ``calibration``: feed dicts (unlabeled inputs; the first ``fit_samples`` fit the
    factors, every other sample is held out for the guard), or the data as a file or folder
    (a path, or ``CalibrationData`` for its batch and sample count), read against the model
    before any pass runs.
    ``labels``: one row per calibration sample (any dtype and shape), for ``top1`` (a class
    per sample or per position) or the user's metric; a ``.npz`` source's ``labels`` array
    when not given.
    ``metric``: ``agreement``, ``top1``, ``rel-error:X``, ``snr:DB`` or
    ``fn(outputs: dict[str, np.ndarray], labels) -> float`` (higher is better) on the held-out
    samples; ``max_accuracy_drop`` bounds the upper end of the 95 % interval of its drop
    (``fuser.search.guard``: each choice judged at 95 %, in a fixed order).
    Default: agreement (top1 with labels) for class scores, else ``rel-error:0.05``.
    ``budget``: None (the default) is the fastest model whose drop stays within
    ``max_accuracy_drop`` (``accuracy=D``); ``latency=F`` or ``macs=F`` caps the search at
    that share of the whole model's cost, within the same drop.
    ``calibration_method``, ``int8_bias_correction``, ``int8_equalize``: int8's ranges and
    repairs (``fuser.search.config.Search``).
    """

    calibration: Sequence[Mapping] | inputs_io.CalibrationData | str | Path
    budget: str | None = None
    max_accuracy_drop: float | None = 0.01
    labels: object = None
    metric: str | Callable | None = None
    fit_samples: int = FIT_SAMPLES
    reconstruction: str = "asymmetric"
    batch: int = 1  # the batch size layers are timed at
    threads: int = 1
    progress: bool | None = None  # a line on stderr (None: when stderr is a terminal)
    search_time: float = SEARCH_TIME  # seconds for the latency table and sensitivity runs
    provider: str = "auto"  # layers are timed on CUDA (IO binding) when it loads, else CPU
    #: go on with degenerate calibration data (constant samples, near-copies, outputs that
    #: hardly vary: ``fuser.search.calibration_check``) instead of refusing it
    allow_degenerate_calibration: bool = False
    #: ``("lowrank",)``, ``("int8",)`` or both, in that order (``fuser.search.lossy``)
    methods: tuple[str, ...] = ("lowrank",)
    #: int8's activation calibrator: ``auto`` (the best of the three), ``minmax``,
    #: ``entropy`` or ``percentile``
    calibration_method: str = "auto"
    #: int8: empirical bias correction (``fuser.search.config.Search.int8_bias_correction``)
    int8_bias_correction: bool = False
    #: int8: cross-layer equalization first (``fuser.search.config.Search.int8_equalize``)
    int8_equalize: bool = False

    def calibration_data(self, model: onnx.ModelProto,
                         input_shapes: Mapping[str, Sequence[int]] | None = None
                         ) -> tuple[list[Mapping], object]:
        """The calibration batches and labels, read against ``model`` when ``calibration``
        names a file or folder."""
        data = self.calibration
        if isinstance(data, str | Path):
            data = inputs_io.CalibrationData(data)
        if not isinstance(data, inputs_io.CalibrationData):
            return list(data), self.labels
        batches, labels = data.load(model, input_shapes)
        return batches, labels if self.labels is None else self.labels

    def search(self, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Search:
        """The search's settings: ``budget``, by default ``accuracy=D`` with D the allowed
        drop (1 without one: no bound)."""
        drop = self.max_accuracy_drop
        budget = self.budget or f"accuracy={1.0 if drop is None else drop:g}"
        return Search(budget=budget, max_accuracy_drop=drop, metric=self.metric,
                      fit_samples=self.fit_samples, reconstruction=self.reconstruction,
                      batch=self.batch, threads=self.threads, search_time=self.search_time,
                      provider=self.provider, input_shapes=input_shapes,
                      progress=self.progress,
                      allow_degenerate_calibration=self.allow_degenerate_calibration,
                      methods=tuple(self.methods), calibration_method=self.calibration_method,
                      int8_bias_correction=self.int8_bias_correction,
                      int8_equalize=self.int8_equalize)


@dataclasses.dataclass(frozen=True)
class Config:
    """The arguments of ``optimize`` (see there); ``validation`` is None without validation."""

    passes: Sequence[str | Pass] | None
    skip: Sequence[str]
    options: Mapping[str, Mapping[str, object]]
    max_steps: int
    check: bool
    check_each: bool
    dump_dir: str | Path | None
    validation: Validation | None
    on_failure: str
    lossy: LowRank | None
    input_shapes: Mapping[str, Sequence[int]] | None
    static_shapes: bool
    timing: Timing | None = None



def fixed_shapes(model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None,
                 static: bool, settings: Validation) -> dict[str, tuple[int, ...]]:
    """The fixed input shapes of the run: those given (checked against the model), and with
    ``static`` every input's (the symbolic first dim is the validation batch)."""
    given = given if given is not None else (settings.input_shapes if static else None)
    if static:
        return inputs_io.resolve_shapes(model, given, settings.batch)
    if not given:
        return {}
    return inputs_io.resolve_shapes(model, given, settings.batch, partial=True)


def validation_batches(model: onnx.ModelProto, settings: Validation) -> list[dict]:
    """The batches validation compares on: the user's data, or seeded random inputs."""
    validation.check_tolerance_names(settings.atol, settings.rtol,
                                     [o.name for o in model.graph.output])
    shapes = inputs_io.resolve_shapes(model, settings.input_shapes, settings.batch)
    if settings.inputs is not None:
        return inputs_io.load_batches(settings.inputs, model, shapes)
    return inputs_io.random_batches(model, shapes, settings.count, settings.seed)


def build_pipeline(passes: Sequence[str | Pass] | None, skip: Sequence[str],
                   options: Mapping[str, Mapping[str, object]]) -> list[Pass]:
    """The passes to run: names made into passes with their options, ``skip`` left out,
    ``inline-constants`` first unless skipped."""
    names = list(DEFAULT_PIPELINE) if passes is None else list(passes)
    for name in list(skip) + list(options):
        if name not in REGISTRY:
            raise FuserError(f"unknown pass {name!r} (known: {', '.join(sorted(REGISTRY))})")
    pipeline = []
    for entry in names:
        if isinstance(entry, Pass):
            pipeline.append(entry)
        elif entry not in skip:
            try:
                pipeline.append(get_pass(entry, **options.get(entry, {})))
            except TypeError as exc:
                raise FuserError(f"bad options for pass {entry!r}: {exc}") from None
    if "inline-constants" not in skip and all(p.name != "inline-constants" for p in pipeline):
        # Weights held in Constant nodes must be constants before any pass can read them.
        pipeline.insert(0, get_pass("inline-constants"))
    return pipeline


@dataclasses.dataclass(frozen=True)
class Timing:
    """How ``bench`` and ``optimize`` time models: keyword arguments of
    ``fuser.runtime.bench.benchmark`` (the CLI's timing options parse into it), and for
    ``optimize`` the batch sizes timed and what a slower result gets.

    ``optimize`` with a ``Timing`` times its result against the original at ``levels`` and
    ``batches`` (seeded random inputs), each speed-up until its interval is ``resolve`` wide
    (or the ``time_budget`` per level and batch is spent). When the result is slower at the
    deploy level (``all`` when timed, else the last level), the passes that cost the time are
    found by bisection and rolled back, unless ``allow_slower``.
    """

    levels: tuple[str, ...] = ("disable", "all")
    provider: str = "auto"
    threads: int | None = None
    warmup: int = 5
    rounds: int = 500
    time_budget: float | None = 5.0
    cuda_graph: bool = False
    resolve: float | None = benchmarking.RESOLVE
    batches: tuple[int, ...] = (1,)
    allow_slower: bool = False
    seed: int = 0

    @property
    def deploy_level(self) -> str:
        """The level the speed check judges at: ``all`` when timed, else the last one."""
        return "all" if "all" in self.levels else self.levels[-1]

    def run(self, models: Mapping[str, Any], feeds: Mapping[int, Mapping],
            levels: Sequence[str] | None = None) -> benchmarking.BenchResult:
        """Time ``models`` on ``feeds`` (batch size -> inputs) at ``levels`` (default: all
        of this timing's levels)."""
        return benchmarking.benchmark(
            models, feeds, levels=tuple(levels or self.levels), provider=self.provider,
            threads=self.threads, warmup=self.warmup, rounds=self.rounds,
            time_budget=self.time_budget, cuda_graph=self.cuda_graph, resolve=self.resolve)

    def benchmark(self, models: Mapping[str, Any], feeds: Mapping[int, Mapping]
                  ) -> dict[str, Any]:
        """``run``, as a dict."""
        return self.run(models, feeds).to_dict()
