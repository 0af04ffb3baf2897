import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True, scope="session")
def _latency_cache(tmp_path_factory):
    """Keep the low-rank latency cache of the test run out of the user's home."""
    import os

    os.environ["FUSER_CACHE"] = str(tmp_path_factory.mktemp("fuser-cache"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="run the fuzz tests (tests/robustness/test_fuzz.py) with the long "
                          "'slow' hypothesis profile (same as FUSER_FUZZ_PROFILE=slow)")


def pytest_configure(config):
    import os

    if config.getoption("--slow"):
        os.environ["FUSER_FUZZ_PROFILE"] = "slow"
