"""Eval sets read from an ImageFolder tree (one sub-folder per class), e.g. ImageNet val.

Folder names are matched to the model's classes by index ("0", "417"), by class name
("tench", "golden_retriever"), or, when there are exactly as many folders as classes, by
sorted order (the standard WordNet-id layout of ImageNet).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.transforms import InterpolationMode

from vcheck.data.evalset import FileEvalSet
from vcheck.errors import InvalidArgument, MissingArtefactError
from vcheck.models.base import ModelCfg


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def folder_to_class(folders: list[str], classes: tuple[str, ...], root: Path) -> dict[str, int]:
    by_name = {_norm(c): i for i, c in enumerate(classes)}
    mapping: dict[str, int] = {}
    for folder in folders:
        if folder.isdigit() and int(folder) < len(classes):
            mapping[folder] = int(folder)
        elif _norm(folder) in by_name:
            mapping[folder] = by_name[_norm(folder)]
    if len(mapping) == len(folders):
        return mapping
    if not mapping and len(folders) == len(classes):  # e.g. WordNet ids, in index order
        return {f: i for i, f in enumerate(sorted(folders))}
    unmatched = [f for f in folders if f not in mapping]
    raise InvalidArgument(
        f"class folder {unmatched[0]!r} in {root} matches none of the model's "
        f"{len(classes)} classes; name folders by class index (e.g. '0') or class name "
        f"(e.g. {classes[0]!r}), or provide one folder per class."
    )


def model_transform(cfg: ModelCfg) -> transforms.Compose:
    """File image -> float [0, 1] tensor at the model's input size (no normalisation)."""
    channels, height, width = cfg.input_size
    steps: list = [transforms.Grayscale(1) if channels == 1 else transforms.Lambda(_rgb)]
    interpolation = InterpolationMode(cfg.interpolation)
    steps.append(transforms.Resize(cfg.resize or min(height, width), interpolation=interpolation))
    steps += [transforms.CenterCrop((height, width)), transforms.ToTensor()]
    return transforms.Compose(steps)


def _rgb(image):  # module-level so DataLoader workers can pickle the transform
    return image.convert("RGB")


def load_image_folder(name: str, root: Path, cfg: ModelCfg) -> FileEvalSet:
    """An ImageFolder tree as an eval set for a model with config ``cfg``."""
    root = Path(root).expanduser()
    if (root / "val").is_dir() and not any(p.is_file() for p in root.iterdir()):
        candidate = root / "val"
        if any(p.is_dir() for p in candidate.iterdir()):
            root = candidate
    if not root.is_dir():
        raise MissingArtefactError(
            f"eval set {name!r}: image folder {root} does not exist; pass --data-root pointing "
            "to a folder with one sub-folder of images per class."
        )
    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise MissingArtefactError(f"eval set {name!r}: {exc}") from None
    mapping = folder_to_class(folder.classes, cfg.classes, root)
    paths = [p for p, _ in folder.samples]
    labels = torch.tensor([mapping[folder.classes[c]] for _, c in folder.samples])
    ids = [os.path.relpath(p, root) for p in paths]
    h = hashlib.sha256()
    for rel, p in zip(
        ids, paths, strict=True
    ):  # names, sizes, mtimes: cheap, and any edit changes it
        st = os.stat(p)
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(labels.numpy().tobytes())
    return FileEvalSet(
        name=name,
        ids=ids,
        labels=labels,
        classes=cfg.classes,
        fingerprint=h.hexdigest(),
        source=f"ImageFolder {root}",
        paths=paths,
        transform=model_transform(cfg),
        input_size=cfg.input_size,
    )
