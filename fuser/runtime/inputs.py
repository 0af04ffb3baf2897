"""Model inputs: their declared specs, concrete shapes, seeded random batches, and real data
from a ``.npz`` file, ``.npy`` files (one per input) or a folder of images.

Dynamic dimensions: a symbolic *first* dimension is the batch and takes ``batch`` (default
1); any other dynamic dimension must be given with ``--input-shape name:1x3x224x224``, and a
model that needs one is refused with a message naming the input and the dimension.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from fuser.errors import FuserError

Feeds = dict[str, np.ndarray]
logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A graph input as declared: name, numpy dtype, dims (ints, symbols or None)."""

    name: str
    dtype: np.dtype
    dims: tuple[int | str | None, ...]


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The model's real inputs (initializers listed as inputs by old exporters excluded)."""
    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except Exception as exc:
            raise FuserError(f"input '{value.name}' has an unsupported type") from exc
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in tensor_type.shape.dim)
        specs.append(InputSpec(value.name, dtype, dims))
    return specs


def batch_axes(specs: Sequence[InputSpec]) -> dict[str, int | None]:
    """The axis of each input that holds the samples, from the declared dims: a symbolic
    first dim; else the axis that carries the first input's batch symbol (an RNN state
    ``[2, N, 128]`` beside ``x [N, T, 40]``: axis 1), or the input's only symbolic dim
    (exporters that name each input's dims apart); else None, a constant input fed whole
    with every batch (a scalar sample rate, a fixed-shape table) when the model's batch is
    symbolic. In a model whose every dim is fixed, axis 0."""
    first = specs[0].dims[0] if specs and specs[0].dims else 1
    symbolic_batch = not (isinstance(first, int) and first > 0)
    axes: dict[str, int | None] = {}
    for spec in specs:
        dims = spec.dims
        if not dims:
            axes[spec.name] = None
        elif not (isinstance(dims[0], int) and dims[0] > 0):
            axes[spec.name] = 0
        elif isinstance(first, str) and first in dims[1:]:
            axes[spec.name] = dims.index(first)
        elif symbolic_batch and len(dynamic := [i for i, d in enumerate(dims)
                                                if not (isinstance(d, int) and d > 0)]) == 1:
            axes[spec.name] = dynamic[0]  # its one symbolic dim, named apart (tf2onnx: unk__7)
        else:
            axes[spec.name] = None if symbolic_batch else 0
    return axes


def resolve_shapes(  # noqa: PLR0912  (one check per way a shape can be wrong)
        model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]] | None = None,
                   batch: int = 1, *, partial: bool = False) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for every input, or FuserError naming what is missing or wrong.

    ``partial``: check the given shapes only, and return just those.
    """
    shapes = dict(shapes or {})
    empty = [f"input shape of '{n}' {tuple(s)}" for n, s in shapes.items() if min(s, default=1) < 1]
    if batch < 1 or empty:  # zero samples would validate anything
        raise FuserError(f"{empty[0] if empty else f'batch {batch}'}: must be at least 1 in "
                         "every dimension (no sample otherwise)")
    specs = input_specs(model)
    names = {s.name for s in specs}
    for name in shapes:
        if name not in names:
            raise FuserError(f"--input-shape names '{name}', but the model's inputs are: "
                             f"{', '.join(sorted(names)) or '(none)'}")
    resolved, axes = {}, batch_axes(specs)
    for spec in specs:
        if 0 in spec.dims:  # onnxruntime takes a declared 0 as fixed: an empty tensor
            raise FuserError(f"input '{spec.name}' declares dimension {spec.dims.index(0)} as 0: "
                             "the model takes no sample, so nothing can be run or compared")
        if spec.name in shapes:
            shape = tuple(shapes[spec.name])
            if spec.dims and len(shape) != len(spec.dims):
                raise FuserError(f"--input-shape for '{spec.name}' has {len(shape)} dims, the "
                                 f"model declares {len(spec.dims)}")
            for axis, (given, declared) in enumerate(zip(shape, spec.dims, strict=False)):
                if isinstance(declared, int) and declared > 0 and given != declared:
                    raise FuserError(f"--input-shape for '{spec.name}': dimension {axis} is "
                                     f"{given}, the model fixes it at {declared}")
            resolved[spec.name] = shape
            continue
        if partial:
            continue
        shape = []
        for axis, dim in enumerate(spec.dims):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == axes[spec.name]:
                shape.append(batch)
            else:
                example = "x".join(str(d) if isinstance(d, int) and d > 0 else "?"
                                   for d in spec.dims)
                raise FuserError(f"input '{spec.name}' dimension {axis} ({dim or '?'}) is "
                                 f"dynamic: give --input-shape {spec.name}:{example}")
        resolved[spec.name] = tuple(shape)
    return resolved


def random_batches(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]],
                   count: int, seed: int = 0) -> list[Feeds]:
    """``count`` seeded batches: standard normal floats (no NaN/inf on either side for any
    sane model), integers in [0, 4) (valid indices for any non-empty axis), random bools."""
    rng = np.random.default_rng(seed)
    specs = input_specs(model)
    return [{spec.name: random_array(spec.dtype, shapes[spec.name], rng) for spec in specs}
            for _ in range(count)]


def random_array(dtype: np.dtype, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Standard normal floats, random bools, integers in [0, 4)."""
    if dtype.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, tuple(shape)).astype(dtype)
    return rng.integers(0, 4, tuple(shape)).astype(dtype)


def load_batches(source: str | Path, model: onnx.ModelProto,
                 shapes: Mapping[str, tuple[int, ...]], max_batches: int | None = None,
                 remainder: bool = True) -> list[Feeds]:
    """Real inputs from a ``.npz``, ``name=file.npy[,name=file.npy]`` or an image folder,
    cut into batches of the resolved batch size: all of them, or at most ``max_batches``.

    With ``remainder``, samples that do not fill a last batch form a smaller one when the
    model's batch dimension is dynamic; samples left out are logged."""
    specs = input_specs(model)
    text = str(source)
    if "=" in text or text.endswith(".npy"):
        arrays = _load_npy(text, specs)
    else:
        path = Path(source)
        if not path.exists():
            raise FuserError(f"{path}: no such file or folder")
        arrays = _load_images(path, specs, shapes) if path.is_dir() else _load_npz(path, specs)
    axes = batch_axes(specs)
    for spec in specs:
        arrays[spec.name] = _checked(source, spec, arrays[spec.name], shapes[spec.name],
                                     axes[spec.name])
    # inputs with samples on axis 0 first: a batch's size is its first value's length
    batched = _batched(specs, axes)
    order = [s.name for s in batched] + [s.name for s in specs if axes[s.name] is None]
    total = min((arrays[s.name].shape[axes[s.name]] for s in batched), default=1)
    lead = batched[0] if batched else None
    size = batch_size(model, shapes)
    declared = lead.dims[axes[lead.name]] if lead else 1
    fixed = isinstance(declared, int) and declared > 0
    step = max(size, 1)
    last = total if remainder and not fixed else total - size + 1
    batches = [{n: _samples(arrays[n], axes[n], start, size) for n in order}
               for start in range(0, max(last, 0), step)][:max_batches]
    if not batches:
        raise FuserError(f"{source}: {total} sample(s), fewer than one batch of {size}")
    used = sum(b[lead.name].shape[axes[lead.name]] for b in batches) if lead else 0
    if used < total:
        why = f"at most {max_batches} batch(es)" if len(batches) == max_batches else \
            "the model fixes the batch size" if fixed else "whole batches only"
        logger.warning("%s: %d of %d samples used, in batches of %d (%s)", source, used, total,
                       size, why)
    return batches


def _batched(specs: Sequence[InputSpec], axes: Mapping[str, int | None]) -> list[InputSpec]:
    """The inputs that hold samples, those on axis 0 first."""
    return sorted((s for s in specs if axes[s.name] is not None),
                  key=lambda s: axes[s.name] != 0)


def batch_size(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Samples in a batch at these resolved shapes: the first sample-holding input's size on
    its batch axis (``batch_axes``); 1 without one."""
    specs = input_specs(model)
    axes = batch_axes(specs)
    lead = next(iter(_batched(specs, axes)), None)
    return shapes[lead.name][axes[lead.name]] if lead else 1


def _checked(source: str | Path, spec: InputSpec, array: np.ndarray,
             want: tuple[int, ...], axis: int | None) -> np.ndarray:
    """``array`` checked against the input's resolved shape (every dim but the batch axis;
    a constant input: all of them), cast to its dtype when only the width differs."""
    if axis is None:
        if tuple(array.shape) != tuple(want):
            raise FuserError(f"{source}: '{spec.name}' has shape {list(array.shape)}; the model "
                             f"takes it whole with every batch, as {list(want)}")
    elif array.ndim != len(want) or any(a != w for i, (a, w) in enumerate(
            zip(array.shape, want, strict=True)) if i != axis):
        takes = ["N" if i == axis else str(w) for i, w in enumerate(want)]
        raise FuserError(f"{source}: '{spec.name}' has shape {list(array.shape)}, the model "
                         f"takes [{', '.join(takes)}]")
    if array.dtype != spec.dtype:
        if array.dtype.kind != spec.dtype.kind:
            raise FuserError(f"{source}: '{spec.name}' is {array.dtype}, the model takes "
                             f"{spec.dtype}")
        array = array.astype(spec.dtype)
    return array


def _samples(array: np.ndarray, axis: int | None, start: int, size: int) -> np.ndarray:
    """Samples ``start:start + size`` along ``axis`` (the whole array for a constant)."""
    if axis is None:
        return array
    return array[(slice(None),) * axis + (slice(start, start + size),)]


@dataclasses.dataclass(frozen=True)
class CalibrationData:
    """Calibration data as the user has it, read against the model when the run has it in
    hand (``fuser.pipeline``: the model is parsed once): ``source`` as ``load_batches``
    reads it (a ``.npz``, ``.npy`` files or an image folder), ``batch`` samples a batch where
    the model's batch is symbolic, at most ``samples`` samples, and a ``labels`` array the
    ``.npz`` may hold (one row per sample, of any shape)."""

    source: str | Path
    batch: int = 16
    samples: int = 1024

    def load(self, model: onnx.ModelProto,
             input_shapes: Mapping[str, Sequence[int]] | None = None
             ) -> tuple[list[Feeds], np.ndarray | None]:
        """The batches (whole ones only) and the labels of the samples they hold."""
        shapes = resolve_shapes(model, input_shapes, self.batch)
        # counted at the batch the model really takes: a model fixed at batch 1 once read
        # 64 of 1024 samples (1024 // 16 batches of 1)
        size = max(1, batch_size(model, shapes))
        batches = load_batches(self.source, model, shapes,
                               max_batches=max(2, -(-self.samples // size)), remainder=False)
        return batches, self.labels(len(batches) * size)  # whole batches only

    def labels(self, count: int) -> np.ndarray | None:
        """The ``labels`` array of a ``.npz`` source, its first ``count`` rows (None for
        another source or without one); FuserError when it has fewer rows."""
        if not str(self.source).endswith(".npz"):
            return None
        with np.load(self.source) as data:
            if "labels" not in data.files:
                return None
            labels = data["labels"]
        if labels.ndim == 0 or len(labels) < count:
            raise FuserError(f"{self.source}: 'labels' {list(labels.shape)} must hold one row "
                             f"per sample ({count} used)")
        return labels[:count]


def _load_npz(path: Path, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise FuserError(f"{path}: not a readable .npz file ({exc})") from exc
    if "labels" in arrays and all(s.name != "labels" for s in specs):
        del arrays["labels"]  # labels ride along in calibration files (low-rank check)
    if len(specs) == 1 and len(arrays) == 1:
        return {specs[0].name: next(iter(arrays.values()))}
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise FuserError(f"{path}: no array for input(s) {', '.join(missing)} (it holds "
                         f"{', '.join(sorted(arrays)) or 'nothing'})")
    return {s.name: arrays[s.name] for s in specs}


def _load_npy(text: str, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    arrays = {}
    for part in text.split(","):
        name, sep, file = part.rpartition("=")
        if not sep:
            if len(specs) != 1:
                raise FuserError(f"{part}: name the input (NAME=file.npy); the model has "
                                 f"{len(specs)} inputs")
            name = specs[0].name
        try:
            arrays[name] = np.load(file)
        except Exception as exc:
            raise FuserError(f"{file}: not a readable .npy file ({exc})") from exc
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise FuserError(f"no .npy file given for input(s) {', '.join(missing)}")
    return arrays


def _load_images(folder: Path, specs: list[InputSpec],
                 shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Images resized to the input's size, scaled to [0, 1], laid out NCHW or NHWC."""
    from PIL import Image

    if len(specs) != 1:
        raise FuserError(f"{folder}: an image folder feeds one input; the model has "
                         f"{len(specs)}")
    spec = specs[0]
    shape = shapes[spec.name]
    if len(shape) != 4 or spec.dtype.kind != "f":
        raise FuserError(f"{folder}: images need a 4-D float input; '{spec.name}' is "
                         f"{spec.dtype} {list(shape)}")
    if shape[1] in (1, 3):
        channels, (height, width), layout = shape[1], shape[2:], "NCHW"
    elif shape[3] in (1, 3):
        channels, (height, width), layout = shape[3], shape[1:3], "NHWC"
    else:
        raise FuserError(f"{folder}: input '{spec.name}' {list(shape)} has neither 1 nor 3 "
                         "channels on axis 1 or 3")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FuserError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32) / 255.0
        except OSError as exc:
            raise FuserError(f"{file}: not a readable image ({exc})") from exc
        pixels = pixels.reshape(height, width, channels)
        images.append(pixels.transpose(2, 0, 1) if layout == "NCHW" else pixels)
    return {spec.name: np.stack(images).astype(spec.dtype)}


def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in shapes.items())


def _described(spec: InputSpec) -> str:
    dims = ", ".join(str(d) if d not in (None, "") else "?" for d in spec.dims)
    return f"[{dims}] {spec.dtype}"


def require_matching_inputs(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                            label: str, reference: onnx.ModelProto | None = None,
                            reference_label: str = "the inputs") -> None:
    """Refuse ``feeds`` that ``model`` cannot take (an input missing or extra, another dtype,
    rank or fixed dimension), in one line naming the input and both shapes: those of
    ``reference`` (the model the feeds were made for), else those of the feeds.

    Raises:
        FuserError: e.g. ``input 'x': a.onnx takes [N, 3, 8, 8] float32, b.onnx takes
            [N, 3, 9, 9] float32``.
    """
    specs = {s.name: s for s in input_specs(model)}
    made_for = {s.name: s for s in input_specs(reference)} if reference is not None else {}

    def other(name: str) -> str:
        if name in made_for:
            return f"{reference_label} takes {_described(made_for[name])}"
        return f"{reference_label} give {list(feeds[name].shape)} {feeds[name].dtype}"

    for name in feeds:
        if name not in specs:
            raise FuserError(f"input '{name}': {other(name)}, {label} has no such input (its "
                             f"inputs: {', '.join(specs) or 'none'})")
    for name, spec in specs.items():
        if name not in feeds:
            verb = "has" if reference is not None else "have"
            raise FuserError(f"input '{name}': {label} takes {_described(spec)}, "
                             f"{reference_label} {verb} no such input")
        value = np.asarray(feeds[name])
        fixed = all(not isinstance(d, int) or d <= 0 or d == v
                    for d, v in zip(spec.dims, value.shape, strict=False))
        if value.dtype != spec.dtype or len(spec.dims) != value.ndim or not fixed:
            raise FuserError(f"input '{name}': {other(name)}, {label} takes {_described(spec)}")
