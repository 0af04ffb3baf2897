"""The result of a low-rank search (``fuser.search.search.compress``): one choice per
candidate layer and the end-to-end figures."""

from __future__ import annotations

import dataclasses

from fuser.report.records import Record, doc


@dataclasses.dataclass(frozen=True)
class LayerChoice(Record):
    """What happened to one candidate layer."""

    layer: str = doc("the layer (its node's name)")
    op: str = doc("Conv, Gemm or MatMul")
    method: str = doc('"dense" (kept) or the factorized form: `channel` (output side), '
                      '`input` (input-side projection), `tucker2` (both sides), `svd` '
                      "(Gemm/MatMul), `spatial` (k x 1 then 1 x k), or `int8` (QDQ, "
                      "rank 8: the bits)")
    rank: int = doc("the rank chosen (0 when dense; for `tucker2` the input side's)")
    macs_before: int = doc("the layer's MACs, dense")
    macs_after: int = doc("its MACs as chosen")
    ms_before: float = doc("onnxruntime latency of the dense layer alone (ms)")
    ms_after: float = doc("latency as chosen (ms)")
    energy: float = doc("retained response energy (1 when dense)")
    response_error: float | None = doc("relative error on the calibration responses",
                                       default=None)
    note: str = doc("why the layer stayed dense, if it did", default="")
    rank_out: int = doc("`tucker2`: the output side's rank (else 0)", default=0)
    drop_alone: float | None = doc(
        "the metric's drop on the probe samples with this layer alone rewritten as chosen "
        "(the sensitivity the allocation used; null when dense)", default=None)
    options_measured: int = doc("forms and ranks whose sensitivity was measured on this "
                                "layer", default=0)


@dataclasses.dataclass(frozen=True)
class Rung(Record):
    """One rung of the guard's ladder: a model with some of the search's moves, judged on
    the held-out samples (the first refusal ends the ladder; the last rung accepted is
    delivered)."""

    moves: int = doc("moves of the search's trajectory in this rung's model (a move rewrites "
                     "a layer, or takes it to a smaller rank or another form)")
    of: int = doc("moves of the trajectory's last choice")
    drop: float = doc("the metric's drop on the held-out samples the looks saw")
    interval: list[float] = doc("the drop's interval [low, high] at `confidence`")
    confidence: float = doc("the interval's level (the looks spend 95 % over their looks)")
    samples: int = doc("held-out samples judged (distinct ones when near-copies are grouped)")
    accepted: bool = doc("whether the guard accepted this rung")
    layers_ms: float | None = doc("the candidate layers' latency in this rung's model, each "
                                  "layer timed alone at ORT_ENABLE_ALL (ms); null for int8, "
                                  "whose layers are timed in the whole model only",
                                  default=None)
    layers_ms_dense: float | None = doc("the same layers' latency, all dense (ms)",
                                        default=None)


@dataclasses.dataclass(frozen=True)
class Compression(Record):
    """The result of a search: per-layer choices and end-to-end figures (the report's
    `lowrank`, with `--lossy lowrank`, else null)."""

    budget: str = doc("the budget asked for (`latency=F`, `macs=F`, `accuracy=D`)")
    layers: list[LayerChoice] = doc("one per candidate layer")
    macs_before: int = doc("the model's MACs before")
    macs_after: int = doc("and after")
    top1_agreement: float | None = doc("held-out top-1 agreement with the original (null "
                                       "when the output is not class scores)")
    relative_error: float = doc("relative L2 error of the outputs (the worst one) on the "
                                "held-out samples")
    accuracy_before: float | None = doc("accuracy with labels (metric `top1`), else null",
                                        default=None)
    accuracy_after: float | None = doc("accuracy after, with labels", default=None)
    backed_off: list[str] = doc("layers the search's trajectory rewrote further than the "
                                "choice the guard accepted (a higher rank or dense)",
                                default_factory=list)
    seconds: float = doc("time of the search", default=0.0)
    notes: list[str] = doc("what the search did, e.g. the choice the guard refused",
                           default_factory=list)
    not_considered: list[str] = doc(
        "each Conv/Gemm/MatMul the search could not consider, with the reason, e.g. "
        "`Conv 'c3': input size unknown (give --input-shape)`", default_factory=list)
    metric: str = doc("the task metric the guard judged: `agreement`, `top1`, `rel-error:X`, "
                      "`snr:DB`, or the name of the user's function", default="agreement")
    metric_before: float | None = doc("the metric on the held-out samples, original model",
                                      default=None)
    metric_after: float | None = doc("and compressed", default=None)
    drop: float | None = doc("metric_before - metric_after", default=None)
    drop_interval: list[float] | None = doc(
        "interval [low, high] of the drop at `drop_confidence`; the guard decides on high",
        default=None)
    drop_confidence: float | None = doc(
        "the interval's level, 0.95: the guard judges its ladder of choices in a fixed "
        "order, each at this level, and stops at the first refused (fixed-sequence "
        "testing), so the delivered choice holds at it", default=None)
    interval_method: str = doc("`exact binomial` (Clopper-Pearson on the samples made worse) "
                               "or `bootstrap` (1000 seeded resamples of the samples, "
                               "its upper end never below the exact binomial's "
                               "for no sample made worse, times the original's score for a "
                               "user's function; "
                               "`bootstrap (N resamples)` when a slow user function stopped "
                               "it after 5 s, 100 at least; `bootstrap over per-sample "
                               "scores ...` when one call of it took over 50 ms)", default="")
    held_out_samples: int = doc("calibration samples the guard's verdict is on (of the "
                                "`held_out_total` the fitting did not use)", default=0)
    held_out_total: int = doc("held-out samples in all: the guard's looks stop as soon as "
                              "the interval decides (`held_out_samples` of them judged)",
                              default=0)
    distinct_held_out: int = doc("held-out samples as the guard's interval counts them: "
                                 "a group of near-copies counts once (equal to "
                                 "`held_out_samples` when none repeat)", default=0)
    degenerate_calibration: list[str] = doc(
        "what the calibration check found degenerate (constant samples, near-copies, outputs "
        "that hardly vary): only when the user let the search go on "
        "(`--allow-degenerate-calibration`); otherwise the run is refused",
        default_factory=list)
    fit_samples: int = doc("calibration samples the factors were fitted to", default=0)
    guard: str = doc("the guard's verdict in one line: within, refused, or not resolved "
                     "(the held-out set too small for the allowed drop)", default="")
    passed: bool | None = doc("with an accuracy bound (`max_accuracy_drop`): whether the "
                              "upper end of the drop's interval is within it (false also "
                              "when the held-out set cannot resolve it); the key is absent "
                              "without a bound",
                              schema_type="bool", default=None, omit_none=True)
    phases: dict[str, float] = doc(
        "the search's time by phase, seconds: `reference` (the original on the held-out "
        "samples), `plan` (calibration samples, dense layer latencies), `latency` (the "
        "factorized forms' latencies), `sensitivity` (each layer rewritten alone), "
        "`build and guard` (the rewrites and the guard's ladder)", schema_type="{phase: seconds}",
        default_factory=dict)
    search_time: float | None = doc("the search's time budget (seconds; `--search-time`): "
                                    "the latency table, the sensitivity runs and the "
                                    "guard's builds", default=None)
    context_factor: float = doc("the layers' savings in the whole network over their "
                                "savings timed alone (one interleaved timing of the model "
                                "against a twin with every offered rewrite); a latency=F "
                                "budget scales every saving by it", default=1.0)
    estimated_latencies: int = doc("factorized forms whose latency was estimated from MACs "
                                   "because the time budget ran out (0: all measured)",
                                   default=0)
    back_off_steps: int = doc("the guard's builds after the first one", default=0)
    methods: list[str] = doc("the lossy methods that ran, in order: `lowrank`, `int8`",
                             default_factory=lambda: ["lowrank"])
    calibration_method: str = doc("int8's activation calibrator (`minmax`, `entropy`, "
                                  "`percentile`; empty without int8)", default="")
    speedup: float | None = doc(
        "the compressed model's speed-up over the search's input (the exact stage's output, "
        "not the file the user gave: that one is the report's `speed`), timed interleaved "
        "at ORT_ENABLE_ALL at the search's batch size, 1.0 when every layer is kept (null: "
        "not faster, the search's input is delivered)", default=None)
    ladder: list[Rung] = doc("the guard's ladder: each rung judged, in order",
                             default_factory=list)
    allowed_drop: float | None = doc("the drop the guard allowed (null: no bound)",
                                     default=None)
