"""The stages import one way (docs/architecture.md), at the top of their modules.

A module may import the modules of its own stage and of the stages below it, never above:

    about, errors, ortlog  <  usercode  <  report  <  ir  <  passes  <  runtime  <  search
        <  settings, analysis  <  speed_check  <  pipeline  <  api  <  frontends  <  zoo  <  regression
        <  testing  <  cli  <  fuser (the package)

and it imports fuser modules at the top, not inside functions (a function-level import hides
a cycle until the day it runs). The lazy imports below are the justified exceptions: each
imports a module that imports a heavy framework (torch, TensorFlow/Keras) when it is
imported, so that ``import fuser`` never does.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fuser"

ORDER = ["about errors ortlog", "usercode", "report", "ir", "passes", "runtime", "search",
         "settings analysis", "speed_check", "pipeline", "api", "frontends", "zoo", "regression", "testing",
         "cli", "fuser __main__"]
RANK = {stage: rank for rank, names in enumerate(ORDER) for stage in names.split()}

#: (importing module, imported module): why it is imported inside a function.
LAZY = {
    ("fuser.zoo", "fuser.zoo.torch_backend"): "imports torch",
    ("fuser.zoo", "fuser.zoo.keras_backend"): "imports keras",
    ("fuser.zoo", "fuser.zoo.transfer"): "imports torch and keras",
    ("fuser.zoo.digits", "fuser.zoo.transfer"): "imports torch and keras",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fuser"


def _imports(path: Path) -> list[tuple[str, bool]]:  # noqa: C901
    """``(imported fuser module, inside a function)`` for every import of a fuser module."""
    tree = ast.parse(path.read_text())
    inner = {id(node) for function in ast.walk(tree)
             if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
             for node in ast.walk(function)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "fuser":
            names = [f"{node.module}.{alias.name}"  # a submodule, or a name in the module
                     if f"{node.module}.{alias.name}".removeprefix("fuser.") in _SUBMODULES
                     else node.module for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "fuser"]
        else:
            continue
        found += [(name, id(node) in inner) for name in names]
    return found


MODULES = _modules()
_SUBMODULES = {name.removeprefix("fuser.") for name in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_sit_at_the_top(module):
    for imported, lazy in _imports(MODULES[module]):
        source, target = _stage(module), _stage(imported)
        assert source in RANK and target in RANK, f"{module}: stage of {imported} unknown"
        assert source == target or RANK[target] < RANK[source], \
            f"{module} imports {imported}: stage {target} is above {source}"
        assert not lazy or (module, imported) in LAZY, \
            f"{module} imports {imported} inside a function (move it to the top)"


def test_every_justified_lazy_import_still_exists():
    seen = {(m, i) for m, path in MODULES.items() for i, lazy in _imports(path) if lazy}
    assert set(LAZY) <= seen


def test_a_module_imported_above_its_stage_fails_the_check(tmp_path):
    """The check itself can fail: an ir module importing the passes is refused."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from fuser.passes import base\n")
    ((imported, lazy),) = _imports(path)
    assert imported == "fuser.passes.base" and lazy
    assert RANK[_stage(imported)] > RANK["ir"]


def test_import_fuser_loads_no_framework():
    code = ("import sys, fuser, fuser.cli.main; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_functions_pass_the_size_lint():
    """Size by lint, not by line caps: ruff's complexity, branches, statements and arguments
    (pyproject.toml's [tool.ruff.lint] thresholds) hold on every function of fuser/."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT), "--select",
                           "C901,PLR0912,PLR0913,PLR0915", "--output-format", "concise"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_the_stage_list_of_architecture_md_is_the_code():
    """docs/architecture.md lists every top-level module and package of fuser/, in the order
    of ``ORDER``, and nothing else."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    listed = []
    for line in block.splitlines():
        if line and not line[0].isspace():
            head = line.split("  ")[0]
            listed += [name.strip().removesuffix(".py").removesuffix("/")
                       for name in head.split(",")]
    present = sorted(p.stem if p.is_file() else p.name for p in ROOT.iterdir()
                     if (p.suffix == ".py" and p.stem != "__init__") or
                     (p.is_dir() and (p / "__init__.py").exists()))
    assert sorted(listed) == present
    ranks = [RANK[name] for name in listed]
    assert ranks == sorted(ranks), "architecture.md lists the stages out of ORDER"


def test_no_import_cycle_among_the_modules():
    """No module reaches itself through imports (those under ``TYPE_CHECKING`` count: they are
    a cycle that typing hides), packages' ``__init__`` re-exports aside (a package imports its
    own modules to export them)."""
    graph = {module: {imported for imported, _ in _imports(path) if imported in MODULES and
                      imported != module and not module.startswith(imported + ".")}
             for module, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path, module, imported]
            if imported not in state and (found := visit(imported, [*path, module])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)
