"""The model specs the CLI takes for a framework model (``export``, ``check --torch/--keras``):
``zoo:NAME`` (a tiny zoo network), ``module:factory`` or ``FILE.py:factory`` (the user's
code, ``fuser.usercode``), or a Keras file."""

from __future__ import annotations

from typing import Any

from fuser.errors import FuserError
from fuser.frontends.keras import load_keras
from fuser.usercode import load_callable
from fuser.zoo import TINY, build


def load_spec(framework: str, spec: str) -> tuple[Any, Any]:
    """``(model, example input or None)`` from a CLI spec: ``module:factory``, ``zoo:NAME``,
    or (Keras) a ``.keras``/``.h5`` path. A torch factory may return ``(module, example)``."""
    if spec.startswith("zoo:"):
        name = spec[4:]
        if name not in TINY:
            raise FuserError(f"unknown zoo model {name!r} (known: {', '.join(TINY)})")
        arch, params = TINY[name]
        return build(arch, framework, **params), (1, 3, 32, 32)
    if framework == "keras" and spec.endswith((".keras", ".h5", ".hdf5")):
        return load_keras(spec), None
    module_name, sep, factory = spec.rpartition(":")
    if not sep or not module_name or not factory:
        raise FuserError(f"{spec!r}: expected module:factory, FILE.py:factory, zoo:NAME or a "
                         "Keras file")
    make = load_callable(module_name, factory, repr(spec))
    try:
        made = make()
    except Exception as exc:  # noqa: BLE001  (the user's code: any error, one line)
        raise FuserError(f"{spec!r}: {factory}() raised {type(exc).__name__}: {exc}") from None
    if isinstance(made, tuple) and len(made) == 2:
        return made
    return made, None
