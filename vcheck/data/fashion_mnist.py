"""Fashion-MNIST from local files: the Debian package, a data root, or vcheck's cache.

torchvision's FashionMNIST reader needs the four IDX files un-gzipped under
``<root>/FashionMNIST/raw``; files found gzipped elsewhere are un-gzipped into the cache once
per source (atomically, so an interrupted copy is never mistaken for a finished one).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torchvision.datasets import FashionMNIST

from vcheck.data.evalset import TensorEvalSet
from vcheck.errors import MissingArtefactError
from vcheck.models.zoo import FASHION_MNIST_CLASSES

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _candidate_dirs(data_root: Path | None, cache_root: Path) -> list[Path]:
    dirs = []
    if data_root is not None:
        dirs += [data_root, data_root / "FashionMNIST" / "raw", data_root / "fashion-mnist"]
    dirs += [cache_root / "FashionMNIST" / "raw", DEBIAN_DIR]
    return dirs


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def ensure_raw_files(data_root: Path | None, cache_root: Path) -> Path:
    """Return a torchvision root holding ``FashionMNIST/raw/<the four files>``.

    Raises:
        MissingArtefactError: naming every directory looked in and how to install the data.
    """
    raw = cache_root / "FashionMNIST" / "raw"
    looked = _candidate_dirs(data_root, cache_root)
    for directory in looked:
        found = [_find(directory, stem) for stem in FILES]
        if all(found):
            if directory.resolve() == raw.resolve():
                return cache_root
            # One copy per source (path, size, mtime): another --data-root is never shadowed.
            key = hashlib.sha256()
            for src in found:
                st = src.stat()
                key.update(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            root = cache_root / f"fashion-mnist-{key.hexdigest()[:16]}"
            (root / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
            for stem, src in zip(FILES, found, strict=True):
                _copy_unzipped(src, root / "FashionMNIST" / "raw" / stem)
            return root
    raise MissingArtefactError(
        "Fashion-MNIST not found: looked for "
        + ", ".join(FILES)
        + " (optionally .gz) in "
        + ", ".join(str(d) for d in looked)
        + ". Install it with `apt-get install dataset-fashion-mnist` or pass --data-root."
    )


def _copy_unzipped(src: Path, dst: Path) -> None:
    if dst.is_file():
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name + ".")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            gzip.open(src, "rb") if src.suffix == ".gz" else open(src, "rb") as inp,
        ):
            shutil.copyfileobj(inp, out)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_fashion_mnist(
    split: str, data_root: Path | None, cache_root: Path, name: str | None = None
) -> TensorEvalSet:
    """The ``"train"`` or ``"test"`` split as an in-memory eval set (uint8, N x 1 x 28 x 28)."""
    root = ensure_raw_files(data_root, cache_root)
    ds = FashionMNIST(str(root), train=(split == "train"), download=False)
    pixels = ds.data.unsqueeze(1).contiguous()
    labels = ds.targets.to(torch.int64)
    prefix = "train" if split == "train" else "test"
    ids = [f"{prefix}-{i:05d}" for i in range(len(labels))]
    h = hashlib.sha256(pixels.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return TensorEvalSet(
        name=name or f"fmnist_{split}",
        ids=ids,
        labels=labels,
        classes=FASHION_MNIST_CLASSES,
        fingerprint=h.hexdigest(),
        source=f"Fashion-MNIST {split} ({root / 'FashionMNIST' / 'raw'})",
        pixels=pixels,
    )
