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
