"""The contestants of the peer benchmark: fuser's exact pipeline and the tools a user would
otherwise pick, each as a function ``ModelProto -> ModelProto`` run in this process.

A peer that is not installed is reported (with the ``pip install`` that brings it) and
skipped; ``pip install 'onnx-fuser[bench]'`` installs them all.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx


@dataclasses.dataclass(frozen=True)
class Contestant:
    """One tool: ``name`` in tables, the distribution it needs, what it runs in memory
    (``optimize``) and file to file (``files``: default ``onnx.load``, ``optimize``,
    ``onnx.save``, as a user of the tool's Python API writes it)."""

    name: str
    distribution: str
    module: str
    what: str
    optimize: Callable[[onnx.ModelProto], onnx.ModelProto]
    files: Callable[[Path, Path], None] | None = None

    def file_to_file(self, source: Path, target: Path) -> None:
        """Load ``source``, optimize, write ``target``: the whole job a user times."""
        if self.files is not None:
            self.files(source, target)
            return
        onnx.save(self.optimize(onnx.load(str(source))), str(target))


def _fuser(model: onnx.ModelProto) -> onnx.ModelProto:
    import fuser

    # The exact pipeline and the ONNX checker; no numeric validation (the peers' defaults do
    # none either: onnxsim check_n=0, onnxslim model_check=False); it is measured separately.
    return fuser.optimize(model, validate=False)[0]


def _fuser_files(source: Path, target: Path) -> None:
    import fuser

    fuser.save(fuser.optimize(source, validate=False)[0], target)  # what the CLI does


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, _ = onnxsim.simplify(model)
    return simplified


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def _onnxoptimizer_fuse_bn(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, ["fuse_bn_into_conv"])


def _onnxoptimizer_default(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model)


def _ort_basic(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's own offline optimization: a session at ORT_ENABLE_BASIC saves its
    optimized graph (SessionOptions.optimized_model_filepath); portable ONNX at this level."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="fuser-bench-ort-") as folder:
        path = os.path.join(folder, "basic.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        return onnx.load(path)


def _ort_basic_files(source: Path, target: Path) -> None:
    """File to file, onnxruntime reads the model file itself and writes the optimized one."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


CONTESTANTS: tuple[Contestant, ...] = (
    Contestant("fuser", "onnx-fuser", "fuser", "fuser.optimize(model, validate=False): the "
               "exact pipeline + onnx.checker (file to file: fuser.optimize(path), fuser.save)",
               _fuser, _fuser_files),
    Contestant("onnxsim", "onnxsim", "onnxsim", "onnxsim.simplify(model) (defaults)", _onnxsim),
    Contestant("onnxslim", "onnxslim", "onnxslim", "onnxslim.slim(model) (defaults)", _onnxslim),
    Contestant("onnxoptimizer-bn", "onnxoptimizer", "onnxoptimizer",
               "onnxoptimizer.optimize(model, ['fuse_bn_into_conv'])", _onnxoptimizer_fuse_bn),
    Contestant("onnxoptimizer", "onnxoptimizer", "onnxoptimizer",
               "onnxoptimizer.optimize(model) (its default fuse and elimination passes)",
               _onnxoptimizer_default),
    Contestant("ort-basic", "onnxruntime", "onnxruntime",
               "onnxruntime session at ORT_ENABLE_BASIC saving optimized_model_filepath "
               "(in memory: includes serializing the input and loading the saved file; file "
               "to file: the session reads the input file and writes the output)", _ort_basic,
               _ort_basic_files),
)
BY_NAME = {c.name: c for c in CONTESTANTS}


def version(distribution: str) -> str | None:
    """The installed version of a distribution (onnxruntime: either wheel), or None."""
    names = ("onnxruntime", "onnxruntime-gpu") if distribution == "onnxruntime" else \
        (distribution,)
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def availability(contestant: Contestant) -> tuple[bool, str]:
    """(installed, version or the reason it is missing)."""
    try:
        importlib.import_module(contestant.module)
    except Exception as exc:  # ImportError, or a broken native extension
        return False, (f"not installed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                       f"pip install 'onnx-fuser[bench]'")
    return True, version(contestant.distribution) or "unknown version"


def select(names: list[str] | None = None) -> tuple[list[Contestant], dict[str, str]]:
    """The installed contestants among ``names`` (default: all), and the missing ones with
    their reasons. An unknown name is a ValueError."""
    chosen = list(CONTESTANTS) if not names else []
    for name in names or []:
        if name not in BY_NAME:
            raise ValueError(f"unknown contestant {name!r} (known: {', '.join(BY_NAME)})")
        chosen.append(BY_NAME[name])
    present, missing = [], {}
    for contestant in chosen:
        ok, detail = availability(contestant)
        if ok:
            present.append(contestant)
        else:
            missing[contestant.name] = detail
    return present, missing
