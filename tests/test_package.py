"""The package: public API, and no framework imported by ``import fuser``."""

import subprocess
import sys

import fuser


def test_import_fuser_imports_no_framework():
    code = ("import sys, fuser; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_public_api():
    for name in ("optimize", "validate", "benchmark", "load", "save", "Report", "Pass",
                 "PassResult", "PassManager", "Validation", "FuserError"):
        assert hasattr(fuser, name), name


def test_version_and_help_import_no_numpy_onnx_or_onnxruntime():
    """``--version``, ``-h`` and ``import fuser`` stay instant: the running subcommand's
    module is the only one imported, and fuser's public names load on first use; a
    subcommand's ``-h`` imports what it needs."""
    heavy = ("numpy", "onnx", "onnxruntime", "onnx_graphsurgeon")
    code = ("import sys, contextlib, io\n"
            "from fuser.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    codes = [main(['--version']), main(['-h'])]\n"
            f"print(codes, sorted(m for m in {heavy!r} if m in sys.modules))\n"
            "main(['passes'])\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    first, *_, last = done.stdout.strip().splitlines()
    assert first == "[0, 0] []"
    assert last == "['numpy', 'onnx', 'onnx_graphsurgeon']"  # not onnxruntime: runs no model
    assert "lowrank-spatial" in done.stdout  # `passes` lists the weight-only low-rank passes


def test_public_names_load_on_first_use():
    assert fuser.__version__ and sorted(dir(fuser)) == sorted(fuser.__all__)
    assert "lowrank-spatial" in fuser.REGISTRY  # through fuser.search, which registers it
    try:
        fuser.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'no_such_name'" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def test_every_public_name_has_its_module():
    from fuser import _FROM

    assert sorted(fuser.__all__) == sorted(["__version__", *_FROM])
