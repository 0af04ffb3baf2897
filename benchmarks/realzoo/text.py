"""Text recognition tasks on text rendered with PIL: PaddleOCR rec/cls (rapidocr's ONNX files)
and ddddocr's captcha recognizer. Metrics are character accuracy (1 - CER) or accuracy.

The font is DejaVu Sans when the system has it (Debian: fonts-dejavu-core), else Pillow's
bundled default font at the same size; the report says which.
"""

from __future__ import annotations

import ast
import functools
import string

import numpy as np

ALPHABET = string.ascii_letters + string.digits
# DejaVu Sans draws 'I' and 'l' alike: no model can tell them apart case-insensitively
CAPTCHA_ALPHABET = ALPHABET.replace("I", "").replace("l", "")
WORDS = ("model", "graph", "fusion", "kernel", "tensor", "batch", "layer", "width", "export",
         "ONNX", "Conv", "Paris", "Berlin", "2024", "invoice", "total", "price", "number")


@functools.lru_cache(maxsize=8)
def font(size: int):
    """A TrueType font of ``size`` pixels (DejaVu Sans, else Pillow's default)."""
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def font_name() -> str:
    """Which font the renderings use."""
    return " ".join(font(20).getname())


def render_line(text: str, height: int, rng: np.random.Generator, pad: int = 6):
    """A grayscale PIL image of one line of dark text on a light background, tight around
    the text plus ``pad`` pixels, scaled to ``height`` pixels."""
    from PIL import Image, ImageDraw

    size = 40
    face = font(size)
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad),
                       int(rng.integers(215, 256)))
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill=int(rng.integers(0, 60)),
                                font=face)
    width = max(1, round(canvas.width * height / canvas.height))
    return canvas.resize((width, height))


def random_text(rng: np.random.Generator, words: int = 0) -> str:
    """Random characters (4-10 of letters and digits) or a few words when ``words``."""
    if words:
        return " ".join(rng.choice(WORDS, words))
    return "".join(rng.choice(list(ALPHABET), int(rng.integers(4, 11))))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def char_accuracy(got: list[str], want: list[str]) -> float:
    """1 - CER: one minus edit distance over reference characters, over all samples."""
    errors = sum(edit_distance(g, w) for g, w in zip(got, want, strict=True))
    return 1.0 - errors / max(1, sum(len(w) for w in want))


def ctc_greedy(indices: np.ndarray, charset: list[str]) -> str:
    """Greedy CTC decoding of one sequence of class indices (0 = blank)."""
    out, prev = [], -1
    for idx in np.asarray(indices).tolist():
        if idx != prev and idx != 0 and idx < len(charset):
            out.append(charset[idx])
        prev = idx
    return "".join(out)


# --- PaddleOCR (rapidocr-onnxruntime) --------------------------------------------------------

def _paddle_normalize(image, width: int) -> np.ndarray:
    """rapidocr's rec/cls input: RGB, (x / 255 - 0.5) / 0.5, CHW, zero-padded on the right."""
    pixels = np.asarray(image.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0
    out = np.zeros((3, image.height, width), np.float32)
    out[:, :, :min(width, image.width)] = ((pixels - 0.5) / 0.5)[:, :, :width]
    return out


@functools.lru_cache(maxsize=2)
def paddle_charset() -> list[str]:
    """PP-OCRv4 rec's classes: blank, the dictionary in the ONNX metadata, space."""
    import onnx

    from benchmarks.realzoo import fetch, registry

    path = fetch.onnx_path(registry.get("ppocr-v4-rec"))
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return ["blank", *meta["character"].splitlines(), " "]


def ppocr_rec_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """``n`` rendered lines (alternately random characters and words), 48 x 320 each."""
    rng = np.random.default_rng(seed)
    texts, images = [], []
    while len(texts) < n:
        text = random_text(rng, words=int(rng.integers(2, 4)) if len(texts) % 2 else 0)
        line = render_line(text, 48, rng)
        if line.width <= 320:
            texts.append(text)
            images.append(_paddle_normalize(line, 320))
    return {"x": np.stack(images)}, texts


def ppocr_rec_accuracy(outputs: dict[str, np.ndarray], texts: list[str]) -> float:
    """1 - CER of greedy CTC decoding of PP-OCRv4 rec's softmax (higher is better)."""
    probs = next(iter(outputs.values()))
    charset = paddle_charset()
    return char_accuracy([ctc_greedy(p.argmax(axis=-1), charset) for p in probs], texts)


def ppocr_cls_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` rendered lines, 48 x 192, half of them turned by 180 degrees (label 1)."""
    rng = np.random.default_rng(seed)
    images, labels = [], np.arange(n) % 2
    while len(images) < n:
        line = render_line(random_text(rng, words=int(rng.integers(1, 3))), 48, rng)
        if line.width > 192:
            continue
        if labels[len(images)]:
            line = line.rotate(180)
        images.append(_paddle_normalize(line, 192))
    return {"x": np.stack(images)}, labels


def ppocr_cls_accuracy(outputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    """Share of lines whose orientation (0 or 180 degrees) is classified right."""
    scores = next(iter(outputs.values()))
    return float(np.mean(scores.argmax(axis=-1) == labels))


# --- ddddocr ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def ddddocr_charset() -> list[str]:
    """``CHARSET_BETA`` of ddddocr/charsets.py (the classes of its ``common.onnx``), read
    from the unpacked wheel without importing ddddocr."""
    from benchmarks.realzoo import fetch, registry

    spec = registry.get("ddddocr-ocr")
    source = (fetch.package_dir(spec.package, spec.version) / "ddddocr/charsets.py").read_text(
        encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHARSET_BETA":
            return ast.literal_eval(node.value)
    raise LookupError("ddddocr/charsets.py has no CHARSET_BETA")


def ddddocr_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """``n`` captcha-like images, 64 x 160, grayscale / 255: 4-6 random letters and digits
    (no 'I', 'l') with a little noise and two random lines, as ddddocr feeds its model."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    texts, images = [], []
    while len(texts) < n:
        text = "".join(rng.choice(list(CAPTCHA_ALPHABET), int(rng.integers(4, 7))))
        line = render_line(text, 64, rng, pad=8)
        if line.width > 160:
            continue
        canvas = Image.new("L", (160, 64), int(np.asarray(line)[0, 0]))
        canvas.paste(line, (int(rng.integers(0, 161 - line.width)), 0))
        draw = ImageDraw.Draw(canvas)
        for _ in range(2):
            draw.line([tuple(rng.integers(0, [160, 64])), tuple(rng.integers(0, [160, 64]))],
                      fill=int(rng.integers(80, 180)), width=1)
        pixels = np.asarray(canvas, np.float32) + rng.normal(0, 6, (64, 160))
        texts.append(text)
        images.append(np.clip(pixels, 0, 255)[None] / 255.0)
    return {"input1": np.stack(images).astype(np.float32)}, texts


def ddddocr_accuracy(outputs: dict[str, np.ndarray], texts: list[str]) -> float:
    """1 - CER of ddddocr's decoded strings, case-insensitive (the model's charset mixes
    cases it cannot tell apart on many letters); higher is better."""
    logits = next(iter(outputs.values()))  # (sequence, 1, classes) per sample, stacked
    charset = ddddocr_charset()
    rows = logits.reshape(len(texts), -1, logits.shape[-1]).argmax(axis=-1)
    got = [ctc_greedy(row, charset).lower() for row in rows]
    return char_accuracy(got, [t.lower() for t in texts])
