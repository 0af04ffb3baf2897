"""A small trained zoo for honest accuracy numbers: scikit-learn's bundled digits.

``load_digits`` (1,797 8x8 grey images, 10 classes) is upsampled to ``size`` x ``size``, split
80/20 (seeded, stratified), and given a harder *jittered* copy of the held-out split (random
rotation, scale and shift, plus noise). Networks from the zoo are trained in PyTorch with
light augmentation, seeded and on one thread so a run is reproducible; their weights are
saved as ``.npz`` (framework-neutral) and load into either framework (Keras through
``transfer``).

    python -m benchmarks.train_digits      # retrains the committed zoo and prints the table
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from fuser.zoo import build

#: The committed trained zoo: name -> (architecture, parameters, image size, epochs).
ZOO: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "digits_vgg": ("vgg", {"depth": 11, "width": 16, "stages": 4}, 32, 20),
    "digits_resnet": ("resnet", {"depth": 10, "width": 16, "stem_stride": 1}, 32, 20),
    "digits_se_resnet": ("se_resnet", {"depth": 10, "width": 16, "stem_stride": 1}, 32, 20),
}
#: Tiny versions trained inside the tests (seconds).
TINY_ZOO: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "vgg": ("vgg", {"depth": 11, "width": 8, "stages": 4}, 16, 8),
    "resnet": ("resnet", {"depth": 10, "width": 8, "stem_stride": 1}, 16, 8),
    "se_resnet": ("se_resnet", {"depth": 10, "width": 8, "stem_stride": 1}, 16, 8),
}
WEIGHTS = Path(__file__).parent / "weights"


@dataclasses.dataclass
class Digits:
    """The data set at one size: NCHW float32 images in [0, 1], int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    jitter_x: np.ndarray  # the test images, jittered


def load(size: int = 16, seed: int = 0) -> Digits:
    """The digits data set at ``size`` x ``size``, split and jittered with ``seed``."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.from_numpy((data.images / 16.0).astype(np.float32))[:, None]
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                             align_corners=False).numpy()
    train_x, test_x, train_y, test_y = train_test_split(
        images, data.target.astype(np.int64), test_size=0.2, random_state=seed,
        stratify=data.target)
    jitter_x = _jitter(test_x, np.random.default_rng(seed + 1), strength=1.0)
    return Digits(train_x, train_y, test_x, test_y, jitter_x)


def _jitter(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random rotation (+-15 deg), scale (0.9-1.1), shift (+-10 %) and noise (sigma 0.1)."""
    import torch

    n = images.shape[0]
    angle = np.deg2rad(rng.uniform(-15, 15, n) * strength)
    scale = 1 + rng.uniform(-0.1, 0.1, n) * strength
    shift = rng.uniform(-0.2, 0.2, (n, 2)) * strength
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = np.cos(angle) / scale
    theta[:, 0, 1] = -np.sin(angle) / scale
    theta[:, 1, 0] = np.sin(angle) / scale
    theta[:, 1, 1] = np.cos(angle) / scale
    theta[:, :, 2] = shift
    x = torch.from_numpy(images)
    grid = torch.nn.functional.affine_grid(torch.from_numpy(theta), list(x.shape),
                                           align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, align_corners=False).numpy()
    out = out + rng.normal(0, 0.1 * strength, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def train(arch: str, params: dict[str, Any], size: int, epochs: int, seed: int = 0,
          data: Digits | None = None) -> tuple[Any, dict[str, float]]:
    """Train a zoo network on digits; return the torch module (eval mode) and its
    accuracies on the held-out and jittered splits, plus the training time."""
    import torch

    data = data or load(size, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible sums
    try:
        torch.manual_seed(seed)
        net = build(arch, "torch", in_channels=1, num_classes=10, seed=seed, **params)
        for module in net.modules():  # start BN from the usual statistics, not the zoo's
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_parameters()
        optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        steps = epochs * int(np.ceil(len(data.train_x) / 64))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for _ in range(epochs):
            net.train()
            order = rng.permutation(len(data.train_x))
            augmented = _jitter(data.train_x, rng, strength=0.5)
            for i in range(0, len(order), 64):
                batch = order[i:i + 64]
                x = torch.from_numpy(augmented[batch])
                y = torch.from_numpy(data.train_y[batch])
                loss = torch.nn.functional.cross_entropy(net(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        seconds = time.perf_counter() - start
        net.eval()
        metrics = {"test": accuracy(net, data.test_x, data.test_y),
                   "jitter": accuracy(net, data.jitter_x, data.test_y), "seconds": seconds}
    finally:
        torch.set_num_threads(threads)
    return net, metrics


def accuracy(net: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a torch module (or any callable returning logits as numpy)."""
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(images)).numpy()
    return float(np.mean(logits.argmax(axis=1) == labels))


def save_weights(net: Any, path: Path) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez_compressed(path, **arrays)


def load_trained(name: str, framework: str = "torch") -> Any:
    """A committed trained network (``ZOO``) in ``torch`` or ``keras``."""
    import torch

    from fuser.zoo.transfer import torch_to_keras

    arch, params, size, _ = ZOO[name]
    net = build(arch, "torch", in_channels=1, num_classes=10, **params)
    with np.load(WEIGHTS / f"{name}.npz") as arrays:
        net.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
    net.eval()
    if framework == "torch":
        return net
    model = build(arch, "keras", in_channels=1, num_classes=10, image_size=size, **params)
    torch_to_keras(net, model)
    return model
