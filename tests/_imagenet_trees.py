"""Tiny ImageNet-style trees of JPEGs in every layout vcheck reads (shared by the tests).

Each builder writes a few small seeded images and returns the path a user would pass as
``--data-root``; the expected model indices of its classes are in :data:`EXPECTED`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Three ImageNet classes: wnid, torchvision index, torchvision class name.
CLASSES = (("n01440764", 0, "tench"), ("n01443537", 1, "goldfish"), ("n02085620", 151, "Chihuahua"))
# Three ImageNet-R classes (and their indices among ImageNet-1k's 1000).
R_CLASSES = (("n01443537", 1), ("n01833805", 94), ("n02007558", 130))
PER_CLASS = 2


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=80)
    return path


def val_name(k: int) -> str:
    return f"ILSVRC2012_val_{k:08d}.JPEG"


def folder_tree(root: Path, naming: str = "wnid") -> Path:
    """Class folders named by ``naming``: "wnid", "index" or "name"; files ILSVRC2012_val_k."""
    k = 0
    for wnid, index, name in CLASSES:
        folder = {"wnid": wnid, "index": str(index), "name": name}[naming]
        for _ in range(PER_CLASS):
            k += 1
            write_jpeg(root / folder / val_name(k), seed=k)
    return root


def v2_tree(base: Path) -> Path:
    """ImageNetV2's layout: numeric class folders, hashed file names."""
    root = base / "imagenetv2-matched-frequency-format-val"
    for j, (_, index, _) in enumerate(CLASSES):
        for i in range(PER_CLASS):
            write_jpeg(root / str(index) / f"{j}{i}a9f3c1.jpeg", seed=100 + 10 * j + i)
    return root


def flat_tree(base: Path, labels: str = "txt") -> Path:
    """Flat ILSVRC2012_val_k.JPEG files in ``base/val`` with a labels file beside the folder:
    "txt" (one wnid per line) or "csv" (Kaggle's LOC_val_solution.csv)."""
    root = base / "val"
    wnids = [wnid for wnid, _, _ in CLASSES for _ in range(PER_CLASS)]
    for k in range(1, len(wnids) + 1):
        write_jpeg(root / val_name(k), seed=k)
    if labels == "txt":
        (base / "val_labels.txt").write_text("".join(f"{w}\n" for w in wnids))
    else:
        rows = [f"{val_name(k)[:-5]},{w} 1 2 30 40 {w} 3 4 20 20" for k, w in enumerate(wnids, 1)]
        (base / "LOC_val_solution.csv").write_text(
            "ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n"
        )
    return root


def expected_labels(naming: str = "wnid") -> list[int]:
    """Model indices of the images of a folder/flat tree, in vcheck's (sorted) order."""
    if naming == "name":  # folders sort by name: Chihuahua < goldfish < tench
        order = sorted(CLASSES, key=lambda c: c[2])
    elif naming == "index":  # "0" < "1" < "151"
        order = sorted(CLASSES, key=lambda c: str(c[1]))
    else:
        order = list(CLASSES)
    return [index for _, index, _ in order for _ in range(PER_CLASS)]


def imagenet_r_tree(base: Path, name: str = "imagenet-r") -> Path:
    """A subset of ImageNet-R: wnid folders of three of its 200 classes."""
    root = base / name
    for j, (wnid, _) in enumerate(R_CLASSES):
        for i in range(PER_CLASS):
            write_jpeg(root / wnid / f"art_{i}.jpg", seed=200 + 10 * j + i)
    return root
