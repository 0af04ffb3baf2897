"""Provider selection: CUDA only when a probe session really loaded it; host CPU facts."""

from __future__ import annotations

import pytest

from fuser.errors import FuserError
from fuser.runtime import bench, providers
from fuser.runtime.providers import (
    CPU,
    CUDA,
    ProviderChoice,
    cpu_model,
    physical_cores,
    select_provider,
)
from tests.helpers import make_model

ALL = ["TensorrtExecutionProvider", CUDA, CPU]


@pytest.fixture
def model(rng):
    return make_model("g (float[N,2] x) => (float[N,2] y) { y = Relu(x) }", rng)


@pytest.fixture
def gpu(monkeypatch):
    """The NVIDIA driver reports one device (there is none on the test machines)."""
    monkeypatch.setattr(providers, "cuda_devices", lambda: 1)


class FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return list(self._providers)


def fake_probe(loaded, calls=None):
    def probe(model, providers, provider_options):
        if calls is not None:
            calls.append((providers, provider_options))
        return FakeSession(loaded)
    return probe


def failing_probe(model, providers, provider_options):
    raise RuntimeError("CUDA graph capture not possible\nsecond line")


def test_cpu_requested(model):
    choice = select_provider(model, "cpu", probe=failing_probe)
    assert choice == ProviderChoice("cpu", "cpu", [CPU], [{}], "CPU requested")


@pytest.mark.parametrize("requested", ["auto", "cuda"])
def test_cuda_not_in_build(model, requested):
    choice = select_provider(model, requested, available=[CPU], probe=failing_probe)
    assert choice.used == "cpu" and choice.providers == [CPU]
    assert choice.reason == "CUDA not in this onnxruntime build: CPU used"


@pytest.mark.parametrize(("requested", "reason"), [
    ("cuda", "CUDA requested, library failed to load: CPU used"),
    ("auto", "CUDA available but did not load: CPU used"),
])
def test_cuda_listed_but_library_failed_to_load(model, gpu, requested, reason):
    calls = []
    choice = select_provider(model, requested, available=ALL, probe=fake_probe([CPU], calls))
    assert calls == [([CUDA, CPU], [{}, {}])]
    assert (choice.used, choice.providers, choice.reason) == ("cpu", [CPU], reason)
    assert bench.runner_kind(choice) == "plain"


def test_cuda_loaded_uses_io_binding(model, gpu):
    calls = []
    choice = select_provider(model, "cuda", cuda_graph=True, available=ALL,
                             probe=fake_probe([CUDA, CPU], calls))
    # probed without graphs first (item 8), then with them
    assert calls == [([CUDA, CPU], [{}, {}]), ([CUDA, CPU], [{"enable_cuda_graph": "1"}, {}])]
    assert choice.cuda_graph
    assert choice.used == choice.device == "cuda"
    assert choice.providers == [CUDA, CPU]
    assert choice.provider_options == [{"enable_cuda_graph": "1"}, {}]
    assert "loaded" in choice.reason
    assert bench.runner_kind(choice) == "binding"
    assert bench.runner_kind(choice, io_binding=False) == "binding"  # never plain on CUDA


def test_probe_exception_never_raises(model, gpu):
    choice = select_provider(model, "cuda", available=ALL, probe=failing_probe)
    assert choice.used == "cpu"
    assert choice.reason.startswith("CUDA requested, library failed to load: CPU used")
    assert "second line" not in choice.reason


def test_real_probe_on_this_build(model):
    """Whatever this machine has, the choice is consistent and nothing raises."""
    choice = select_provider(model, "auto")
    assert choice.used in ("cpu", "cuda")
    assert choice.providers[0] == (CUDA if choice.used == "cuda" else CPU)


@pytest.mark.parametrize("requested", ["gpu", "CPU", ""])
def test_unknown_provider_is_a_user_error(model, requested):
    with pytest.raises(FuserError, match="unknown provider"):
        select_provider(model, requested)


CPUINFO = "\n\n".join(
    f"processor\t: {i}\nmodel name\t: Test CPU @ 3.0GHz\nphysical id\t: {i // 4}\n"
    f"core id\t\t: {i % 2}" for i in range(8))


def test_physical_cores_counts_unique_pairs(monkeypatch):
    monkeypatch.setattr("fuser.runtime.providers._usable_cpus", lambda: 64)
    assert physical_cores(CPUINFO) == 4  # 2 sockets x 2 cores, hyper-threads counted once
    monkeypatch.setattr("fuser.runtime.providers._usable_cpus", lambda: 3)
    assert physical_cores(CPUINFO) == 3  # never more than this process may use
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert physical_cores("processor : 0\n") == 3


def test_physical_cores_and_cpu_model_on_this_machine():
    assert physical_cores() >= 1
    assert isinstance(cpu_model(), str) and cpu_model()
    assert cpu_model(CPUINFO) == "Test CPU @ 3.0GHz"
    assert cpu_model("") != ""

