"""The settings of one low-rank search, in one record, each with its reason.

``compress`` takes a ``Search``; ``fuser.settings.LowRank`` (the API's lossy stage) holds the
user's data and the settings a user changes, and makes one (``LowRank.search``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from fuser.errors import FuserError

#: Calibration samples the factors are fitted to; every other one is held out for the guard.
FIT_SAMPLES = 128
#: The level of every interval the guard reads (the drop's, of a user's metric too): one
#: constant, so that "95 %" means the same everywhere (``fuser.search.looks`` spends it over
#: the looks).
CONFIDENCE = 0.95
#: The lossy methods (``Search.methods``), and int8's calibrators (``Search.calibration_method``).
METHODS = ("lowrank", "int8")
CALIBRATIONS = ("minmax", "entropy", "percentile")
#: Seconds for the whole search (latency table, sensitivity runs, the guard's builds).
SEARCH_TIME = 180.0


@dataclasses.dataclass(frozen=True)
class Search:
    """Everything a search can be told (the data, labels and a latency table aside)."""

    #: ``macs=F`` / ``latency=F``: stop at that share of the whole model's cost; ``accuracy=D``:
    #: as fast as a drop of D allows (``fuser.settings.LowRank`` makes this its default)
    budget: str = "macs=0.5"
    #: the upper end of the 95 % interval of the metric's drop that the guard accepts (None:
    #: no bound; ``accuracy=D`` sets it to D)
    max_accuracy_drop: float | None = None
    #: ``agreement``, ``top1``, ``rel-error:X``, ``snr:DB`` or ``fn(outputs, labels)``
    #: (``fuser.search.metric``); None: the default for the outputs
    metric: str | Callable | None = None
    #: the first calibration samples fit the factors: 128 pin a 64-channel response PCA
    #: down while leaving most of a 1024-sample set to judge the result
    fit_samples: int = FIT_SAMPLES
    #: ``asymmetric`` (Zhang's, corrects the error layers before add), ``pca`` or
    #: ``whitened`` (Gemm/MatMul)
    reconstruction: str = "asymmetric"
    #: output pixels sampled per image and layer for the fits: 64 keep a layer's responses
    #: well conditioned at a few MB per layer
    samples: int = 64
    #: the batch size layers are timed at (the deploy batch)
    batch: int = 1
    #: onnxruntime's intra-op threads for the timings (the deploy setting)
    threads: int = 1
    #: seeds the samplers and the bootstraps: the same command gives the same choice
    seed: int = 0
    #: a form is offered only if timed at least this much faster than the dense layer: a
    #: smaller margin lets timing noise choose rewrites that are not faster in the network
    speed_margin: float = 0.05
    #: seconds for the whole search
    search_time: float = SEARCH_TIME
    #: where layers are timed: ``auto`` (CUDA with IO binding when it loads), ``cuda``, ``cpu``
    provider: str = "auto"
    #: fixed input shapes, for the layers' sizes
    input_shapes: Mapping[str, Sequence[int]] | None = None
    #: a progress line on stderr (None: a terminal's line, or a log's line every 5 s)
    progress: bool | None = None
    #: go on with degenerate calibration data (``calibration_check``) instead of refusing it
    allow_degenerate_calibration: bool = False
    #: the lossy methods, in the order they run: ``lowrank`` (the factorized forms), ``int8``
    #: (QDQ quantization, ``fuser.search.int8``), or both (int8 then quantizes the model the
    #: low-rank search delivers, factors included)
    methods: tuple[str, ...] = ("lowrank",)
    #: int8's activation ranges: onnxruntime's ``minmax``, ``entropy`` or ``percentile``
    #: calibrator, or ``auto``: each of the three, keeping the one whose all-int8 model loses
    #: least of the metric on the fitting samples (output error on ties). No one of them
    #: wins everywhere: percentile on picodet-layout (output error 0.71, MinMax 0.96),
    #: entropy on tempocnn-cnn (percentile's model lost 3.5 points there, entropy's none)
    calibration_method: str = "auto"
    #: int8: correct each quantized layer's bias by its own mean output shift
    #: (``qdq.Quantizer._correct``). Off: on picodet-layout it raised the all-int8 model's
    #: relative output error from 0.71 to 0.79, on ddddocr-det from 0.050 to 0.053
    int8_bias_correction: bool = False
    #: int8: cross-layer equalization of Conv pairs first (``equalize``). Off: on
    #: ppocr-v4-det (18 pairs) the all-int8 model's relative output error went from 0.253 to
    #: 0.262; the other realzoo models have no pair (SiLU, hardswish, or a BN after the Relu)
    int8_equalize: bool = False

    def __post_init__(self) -> None:
        if not self.methods or set(self.methods) - set(METHODS):
            raise FuserError(f"lossy methods must be among {', '.join(METHODS)}, not "
                             f"{', '.join(self.methods) or 'none'}")
        if self.calibration_method not in ("auto", *CALIBRATIONS):
            raise FuserError("calibration method must be auto or one of "
                             f"{', '.join(CALIBRATIONS)}, "
                             f"not {self.calibration_method!r}")
        if self.reconstruction not in ("asymmetric", "pca", "whitened"):
            raise FuserError("reconstruction must be asymmetric, pca or whitened, not "
                             f"{self.reconstruction!r}")

    def budget_parts(self) -> tuple[str, float, float | None]:
        """``(kind, fraction, allowed drop)`` of the budget; FuserError for a bad one."""
        kind, fraction = parse_budget(self.budget)
        allowed = fraction if kind == "accuracy" else self.max_accuracy_drop
        return kind, fraction, allowed


def parse_budget(text: str) -> tuple[str, float]:
    """``"latency=0.5"``, ``"macs=0.3"`` or ``"accuracy=0.01"`` -> ``(kind, value)``."""
    kind, _, value = text.partition("=")
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if kind not in ("latency", "macs", "accuracy") or not 0 < fraction <= 1:
        raise FuserError(f"--budget {text!r}: expected latency=F, macs=F or accuracy=D "
                         "with 0 < F, D <= 1")
    return kind, fraction
