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
