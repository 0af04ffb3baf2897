"""CUDA selection and fallback (issue 16, items 8 and 12), tested with fakes: no GPU here.

- the probe session never asks for CUDA graphs; graphs are tried in a second probe and, when
  onnxruntime refuses them (a node on the CPU), left off with a note instead of "CUDA did not
  load" and a CPU run;
- every model's session is labelled, and one that refuses graphs falls back alone;
- where nodes really run comes from the session's profile (checked on a real CPU profile);
- no CUDA device: ``cpu (no CUDA device)``; a device that failed to load keeps the long line.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from fuser.cli import main
from fuser.report import timings_text
from fuser.runtime import bench, machine, providers
from fuser.runtime import sessions as runtime
from fuser.runtime.bench import SessionInfo
from fuser.runtime.providers import CPU, CUDA, ProviderChoice, select_provider
from tests.helpers import make_model

ALL = [CUDA, CPU]


@pytest.fixture
def model(rng):
    return make_model("""
        g (float[N,3,8,8] x) => (float[N,4,8,8] y) {
            c = Conv<pads=[1,1,1,1]>(x, W)
            y = Relu(c)
        }""", rng, W=(4, 3, 3, 3))


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(providers, "cuda_devices", lambda: 1)


class FakeSession:
    def __init__(self, loaded):
        self._loaded = loaded

    def get_providers(self):
        return list(self._loaded)


def graphs_refusing_probe(calls):
    """CUDA loads, but a node falls back to the CPU: onnxruntime refuses CUDA graphs."""
    def probe(model, providers_, options):
        calls.append(options)
        if options[0].get("enable_cuda_graph") == "1":
            raise RuntimeError("This session cannot use the CUDA Graph feature as requested by "
                               "the user as all compute graph nodes have not been partitioned "
                               "to the CUDA EP.\nmore")
        return FakeSession([CUDA, CPU])
    return probe


def test_probe_runs_without_graphs_then_falls_back_when_graphs_are_refused(model, gpu):
    calls = []
    choice = select_provider(model, "auto", cuda_graph=True, available=ALL,
                             probe=graphs_refusing_probe(calls))
    assert calls == [[{}, {}], [{"enable_cuda_graph": "1"}, {}]]
    assert choice.used == "cuda" and not choice.cuda_graph
    assert choice.provider_options == [{}, {}]
    assert choice.reason.startswith("CUDA available and loaded; CUDA graphs refused by "
                                    "onnxruntime (RuntimeError: This session cannot use")
    assert choice.reason.endswith("): timed without them") and "more" not in choice.reason


def test_graphs_accepted_by_the_second_probe(model, gpu):
    calls = []
    probe = lambda m, p, o: calls.append(o) or FakeSession([CUDA, CPU])  # noqa: E731
    choice = select_provider(model, "cuda", cuda_graph=True, available=ALL, probe=probe)
    assert calls == [[{}, {}], [{"enable_cuda_graph": "1"}, {}]]
    assert choice.cuda_graph and choice.provider_options == [{"enable_cuda_graph": "1"}, {}]
    assert choice.reason == "CUDA requested and loaded, CUDA graphs on"


def test_without_cuda_graph_there_is_one_probe(model, gpu):
    calls = []
    probe = lambda m, p, o: calls.append(o) or FakeSession([CUDA, CPU])  # noqa: E731
    choice = select_provider(model, "auto", available=ALL, probe=probe)
    assert calls == [[{}, {}]] and choice.used == "cuda" and not choice.cuda_graph


@pytest.mark.parametrize(("requested", "reason"), [
    ("auto", "no CUDA device"), ("cuda", "CUDA requested, no CUDA device: CPU used")])
def test_no_cuda_device_is_said_so_and_nothing_is_probed(model, monkeypatch, requested,
                                                         reason):
    monkeypatch.setattr(providers, "cuda_devices", lambda: 0)

    def probe(*args):
        raise AssertionError("no probe without a device")

    choice = select_provider(model, requested, available=ALL, probe=probe)
    assert (choice.used, choice.reason) == ("cpu", reason)


@pytest.mark.parametrize("devices", [1, None])
def test_a_device_that_failed_to_load_keeps_the_long_line(model, monkeypatch, devices):
    monkeypatch.setattr(providers, "cuda_devices", lambda: devices)
    choice = select_provider(model, "auto", available=ALL,
                             probe=lambda m, p, o: FakeSession([CPU]))
    assert choice.reason == "CUDA available but did not load: CPU used"


class FakeDriver:
    def __init__(self, init, count=0):
        self._init, self._count = init, count

    def cuInit(self, flags):  # noqa: N802 - the driver API's name
        return self._init

    def cuDeviceGetCount(self, pointer):  # noqa: N802
        ctypes.cast(pointer, ctypes.POINTER(ctypes.c_int))[0] = self._count
        return 0


@pytest.mark.parametrize(("driver", "expected"), [
    (None, 0),  # no driver library
    (FakeDriver(100), 0),  # CUDA_ERROR_NO_DEVICE
    (FakeDriver(0, 2), 2),
    (FakeDriver(999), None),  # a driver error: only a probe can tell
])
def test_cuda_devices_from_the_driver_api(monkeypatch, driver, expected):
    def cdll(name):
        if driver is None:
            raise OSError(f"{name}: cannot open shared object file")
        return driver

    monkeypatch.setattr(providers.ctypes, "CDLL", cdll)
    assert providers.cuda_devices() == expected


def test_cpu_no_cuda_device_in_the_timing_line(tmp_path, rng, model, monkeypatch, capsys):
    from fuser import ir as graph_io

    monkeypatch.setattr(providers, "cuda_devices", lambda: 0)
    graph_io.save(model, tmp_path / "m.onnx")
    assert main(["bench", str(tmp_path / "m.onnx"), "--rounds", "3", "--warmup", "1",
                 "--time-budget", "0.1", "--threads", "1", "--level", "disable"]) == 0
    assert "timing: cpu (no CUDA device), 1 threads" in capsys.readouterr().out


# ---------------------------------------------------------------- sessions of each model


CUDA_CHOICE = ProviderChoice("auto", "cuda", [CUDA, CPU], [{"enable_cuda_graph": "1"}, {}],
                             "CUDA available and loaded, CUDA graphs on", cuda_graph=True)


def test_a_model_whose_session_refuses_graphs_falls_back_alone(monkeypatch, model):
    calls = []

    def session(m, **kwargs):
        calls.append((kwargs["label"], kwargs["provider_options"][0]))
        if kwargs["label"] == "optimized" and kwargs["provider_options"][0]:
            raise runtime.RuntimeRefusedError("optimized: onnxruntime cannot run it (graphs)",
                                              "graphs")
        return FakeSession([CUDA, CPU])

    monkeypatch.setattr(runtime, "session", session)
    infos = [bench._open(model, name, "all", 1, CUDA_CHOICE)[1]
             for name in ("original", "optimized")]
    assert calls == [("original", {"enable_cuda_graph": "1"}),
                     ("optimized", {"enable_cuda_graph": "1"}), ("optimized", {})]
    assert [(i.model, i.cuda_graph) for i in infos] == [("original", True),
                                                        ("optimized", False)]
    assert infos[1].note.startswith("CUDA graphs refused by onnxruntime")
    assert infos[0].providers == [CUDA, CPU]


def test_a_model_onnxruntime_refuses_without_graphs_too_is_bad_input(monkeypatch, model):
    def session(m, **kwargs):
        raise runtime.RuntimeRefusedError("b: onnxruntime cannot run it (x)", "x")

    monkeypatch.setattr(runtime, "session", session)
    with pytest.raises(runtime.RuntimeRefusedError, match="b: onnxruntime cannot run it"):
        bench._open(model, "b", "all", 1, CUDA_CHOICE)


def test_every_model_session_is_labelled(monkeypatch, model):
    labels = []
    real = runtime.session

    def spy(m, **kwargs):
        labels.append(kwargs.get("label"))
        return real(m, **kwargs)

    monkeypatch.setattr(runtime, "session", spy)
    feeds = {1: {"x": np.ones((1, 3, 8, 8), np.float32)}}
    bench.benchmark({"a": model, "b": model}, feeds, provider="cpu", threads=1, warmup=1,
                    rounds=2, time_budget=None, levels=("disable",))
    assert labels == [machine.LABEL, "a", "b"]  # the busy check's reference, then the models


# ---------------------------------------------------------------- where nodes run


def test_placement_from_a_profile():
    def event(name, provider, cat="Node"):
        return {"cat": cat, "name": f"{name}_kernel_time", "ph": "X",
                "args": {"op_name": "Conv", "provider": provider}}

    events = [event(f"conv{i}", CUDA) for i in range(50)] + \
        [event(f"shape{i}", CPU) for i in range(3)] + [event("conv0", CUDA)] + \
        [{"cat": "Session", "name": "model_run", "args": {}},
         {"cat": "Node", "name": "conv1_fence_before", "args": {"op_name": "Conv"}}]
    placement = providers.placement_from_profile(events)
    assert placement == {CPU: 3, CUDA: 50}
    assert providers.placement_text(placement) == "53 nodes: 50 on CUDA, 3 on CPU"


def test_node_placement_reads_a_real_onnxruntime_profile(model):
    """The profile format, checked against this onnxruntime: every node on the CPU here."""
    feeds = {"x": np.ones((1, 3, 8, 8), np.float32)}
    placement = providers.node_placement(model, feeds, [CPU], [{}], "disable")
    assert placement == {CPU: len(model.graph.node)}


def test_placement_and_fallback_notes_reach_the_timing_text():
    info = SessionInfo("optimized", "all", [CUDA, CPU], False, {CUDA: 50, CPU: 3},
                       "CUDA graphs refused by onnxruntime (x): timed without them")
    timings = {"timings": [], "provider": {"used": "cuda", "reason": "r"}, "threads": 1,
               "cpu": "c", "sessions": [vars(info)]}
    text = timings_text(timings)
    assert ("optimized (all): 53 nodes: 50 on CUDA, 3 on CPU; CUDA graphs refused by "
            "onnxruntime (x): timed without them") in text
    assert "53 nodes" in timings_text(timings, markdown=True)
    cpu_only = SessionInfo("original", "all", [CPU])
    assert cpu_only.describe() is None
