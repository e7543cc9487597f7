"""Fashion-MNIST from local files: ``--data-root``, the Debian package, or torchvision's
download folder in vcheck's cache.

The four IDX files (gzipped or plain) are read straight into memory and checked: the IDX
header announces the exact number of bytes, and gzip carries a CRC, so a truncated or damaged
file is a one-line error naming it instead of a traceback or a silently smaller data set.
Nothing is unpacked into the cache, so there is no copy to go stale, be half-written or be
unreadable by another user.

A ``--data-root`` that is given is the only place looked in: a typo never falls back to the
installed copy while the report names the typo as the data that was tested.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from vcheck.data.evalset import TensorEvalSet
from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError
from vcheck.models.zoo import FASHION_MNIST_CLASSES

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES = SPLIT_FILES["train"] + SPLIT_FILES["test"]
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels (N,), images (N, H, W); unsigned bytes


def _candidate_dirs(data_root: Path | None, cache_root: Path) -> list[Path]:
    if data_root is not None:
        return [data_root, data_root / "FashionMNIST" / "raw", data_root / "fashion-mnist"]
    return [cache_root / "FashionMNIST" / "raw", DEBIAN_DIR]


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_split_files(split: str, data_root: Path | None, cache_root: Path) -> tuple[Path, Path]:
    """The (images, labels) files of ``split``, from the first folder holding both.

    Raises:
        InvalidArgument: ``data_root`` was given but does not exist.
        MissingArtefactError: naming every folder looked in and how to install the data.
    """
    if data_root is not None and not Path(data_root).is_dir():
        raise InvalidArgument(
            f"--data-root={data_root} does not exist (or is not a folder); fix the path, or "
            "drop --data-root to use the installed Fashion-MNIST"
        )
    stems = SPLIT_FILES[split]
    looked = _candidate_dirs(data_root, cache_root)
    for directory in looked:
        found = [_find(directory, stem) for stem in stems]
        if all(found):
            return found[0], found[1]
    where = ", ".join(str(d) for d in looked)
    if data_root is not None:
        raise MissingArtefactError(
            f"no Fashion-MNIST {split} files ({' and '.join(stems)}, optionally .gz) under "
            f"--data-root={data_root}: looked in {where}. Fix --data-root, or drop it to use "
            "the installed copy"
        )
    raise MissingArtefactError(
        f"Fashion-MNIST {split} files not found: looked for {' and '.join(stems)} (optionally "
        f".gz) in {where}. Install them with `apt-get install dataset-fashion-mnist` or pass "
        "--data-root"
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (plain or gzipped) of unsigned bytes as an array of its announced shape.

    Raises:
        CorruptArtefactError: not IDX, truncated, padded, or a damaged gzip stream.
    """
    fix = "reinstall dataset-fashion-mnist or copy the file again"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        reason = "truncated gzip stream" if isinstance(exc, EOFError) else exc
        raise CorruptArtefactError(f"{path} is damaged ({reason}); {fix}") from None
    if len(raw) < 8:
        raise CorruptArtefactError(f"{path} is not an IDX file ({len(raw)} bytes); {fix}")
    (magic,) = struct.unpack(">I", raw[:4])
    ndim = _IDX_MAGIC.get(magic)
    if ndim is None:
        raise CorruptArtefactError(
            f"{path} is not an unsigned-byte IDX file (magic number {magic}); {fix}"
        )
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise CorruptArtefactError(
            f"{path} is {state}: its header announces {shape} ({expected} bytes), the data "
            f"holds {len(raw)} bytes; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(
    split: str, data_root: Path | None, cache_root: Path, name: str | None = None
) -> TensorEvalSet:
    """The ``"train"`` or ``"test"`` split as an in-memory eval set (uint8, N x 1 x 28 x 28)."""
    images_path, labels_path = find_split_files(split, data_root, cache_root)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptArtefactError(
            f"{images_path} holds images of shape {images.shape} but {labels_path} holds "
            f"{labels.shape} labels; they must be one 28x28 image per label"
        )
    if images.shape[1:] != (28, 28):
        raise CorruptArtefactError(
            f"{images_path} holds {images.shape[1]}x{images.shape[2]} images; Fashion-MNIST "
            "images are 28x28"
        )
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise CorruptArtefactError(
            f"{labels_path} holds label {int(labels.max())}; Fashion-MNIST labels are 0-9"
        )
    pixels = torch.from_numpy(images.copy()).unsqueeze(1).contiguous()
    targets = torch.from_numpy(labels.astype(np.int64))
    prefix = "train" if split == "train" else "test"
    h = hashlib.sha256(pixels.numpy().tobytes())
    h.update(targets.numpy().tobytes())
    return TensorEvalSet(
        name=name or f"fmnist_{split}",
        ids=[f"{prefix}-{i:05d}" for i in range(len(targets))],
        labels=targets,
        classes=FASHION_MNIST_CLASSES,
        fingerprint=h.hexdigest(),
        source=f"Fashion-MNIST {split} ({images_path.parent})",
        pixels=pixels,
    )
