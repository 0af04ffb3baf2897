"""The user's own code, named on the command line: ``FILE.py:NAME`` (a path, relative or not)
or ``MODULE:NAME`` (importable, the current folder included, as ``python -m`` does). Any
error while loading it is one line naming the spec, never a traceback."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fuser.errors import FuserError


def load_callable(where: str, name: str, spec: str) -> Callable[..., Any]:
    """``name`` from the file or module ``where``; ``spec`` (as the user wrote it, e.g.
    ``--metric m.py:f``) names it in errors."""
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise FuserError(f"{spec}: no file {where}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            with _importable(path.resolve().parent):
                loader.loader.exec_module(module)
        else:
            with _importable(Path(os.getcwd())):
                module = importlib.import_module(where)
    except FuserError:
        raise
    except Exception as exc:  # noqa: BLE001  (the user's code: any error, one line)
        raise FuserError(f"{spec}: cannot load {where}: {type(exc).__name__}: {exc}") from None
    found = getattr(module, name, None)
    if not callable(found):
        raise FuserError(f"{spec}: {where} has no function {name!r}")
    return found


@contextlib.contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``folder`` on ``sys.path`` while the user's code loads (its own imports of siblings)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
