"""docs/writing-a-pass.md's example pass and its tests run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fuser.passes.base import REGISTRY

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-pass.md"


@pytest.fixture
def example():
    """The doc's pass, registered for the test only."""
    pass_code, test_code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    namespace: dict = {}
    exec(compile(pass_code, str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    yield test_code
    REGISTRY.pop("cancel-negations", None)


def test_the_example_pass_and_its_tests_pass(example, rng):
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test(rng)
