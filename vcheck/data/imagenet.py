"""A team's own copy of ImageNet (or a variant), in whatever layout it is stored.

Layouts recognised under ``--data-root`` (or an ``eval_sets`` path), detected from the files:

- class folders named by WordNet id (``n01440764``), any subset of the 1,000 classes: mapped
  through the standard index-to-wnid list, so ``n01440764`` is class 0 whatever else is there;
- class folders named by index (``0`` ... ``999``, the layout of ImageNetV2) or class name;
- a flat folder of ``ILSVRC2012_val_*.JPEG`` with a labels file beside it (or one level up):
  one wnid per line (line k labels ``ILSVRC2012_val_{k:08d}.JPEG``) or Kaggle's
  ``LOC_val_solution.csv``;
- ImageNet-A and ImageNet-R (wnid folders of a 200-class subset), recognised by the folder's
  or eval set's name (``imagenet-r``, ``imagenet_a`` ...) or by holding exactly their 200
  classes; their models are scored on those 200 logits only, as the papers evaluate.

Each load returns one line (:attr:`ImageNetLayout.explanation`) saying what was detected and
why, which the run prints. Empty (zero-byte) image files are skipped and counted.

Public names: class_list, imagenet_wnids, detect_layout, load_imagenet, ImageNetLayout.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vcheck.data.evalset import FileEvalSet
from vcheck.errors import InvalidArgument, MissingArtefactError
from vcheck.models.base import ModelCfg

WNID = re.compile(r"n\d{8}")
VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})\.\w+")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SUBSETS = {"imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R"}
_SUBSET_NAME = re.compile(r"imagenet[-_ ]?([ar])(?![a-z0-9])", re.IGNORECASE)
_V2_NAME = re.compile(r"imagenet[-_ ]?v2", re.IGNORECASE)


@functools.cache
def class_list(name: str) -> tuple[str, ...]:
    """A class list of ``vcheck/data/_info`` (``imagenet_synsets``, ``imagenet_r_synsets``...).

    timm's copy is read when timm is installed (it is the reference), vcheck's otherwise.
    """
    spec = importlib.util.find_spec("timm")
    candidates = [Path(__file__).parent / "_info" / f"{name}.txt"]
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        candidates.insert(0, root / "data" / "_info" / f"{name}.txt")
    path = next((p for p in candidates if p.is_file()), candidates[-1])
    return tuple(path.read_text().split())


def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k wnids in the index order of torchvision and timm classifiers."""
    return class_list("imagenet_synsets")


@dataclass(frozen=True)
class ImageNetLayout:
    """What :func:`detect_layout` found: the layout, its class subset and why."""

    kind: str  # "folders" | "flat"
    root: Path
    naming: str = "wnid"  # folders: "wnid" | "index" | "name"
    subset: str | None = None  # "imagenet_a" | "imagenet_r"
    labels_file: Path | None = None
    reason: str = ""

    @property
    def explanation(self) -> str:
        return f"{self.root}: {self.reason}"


@dataclass
class _Scan:
    files: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _scan(folder: Path, out: _Scan) -> None:
    """Image files under ``folder`` (recursive, sorted), separating empty ones."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=True):
            _scan(Path(entry.path), out)
        elif _is_image(entry.name):
            (out.empty if entry.stat().st_size == 0 else out.files).append(Path(entry.path))


def _subset_from_name(*names: str) -> str | None:
    for name in names:
        m = _SUBSET_NAME.search(name)
        if m:
            return f"imagenet_{m.group(1).lower()}"
    return None


def detect_layout(root: Path, set_name: str = "") -> ImageNetLayout:
    """Which ImageNet layout ``root`` holds; raises a one-line error when none fits."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingArtefactError(
            f"image folder {root} does not exist; pass --data-root pointing to a folder with "
            "one sub-folder of images per class, or to a flat folder of ILSVRC2012_val_*.JPEG"
        )
    if (root / "val").is_dir() and not any(
        p.is_file() and _is_image(p.name) for p in root.iterdir()
    ):
        inner = root / "val"
        if any(p.is_dir() for p in inner.iterdir()) or _loose_val_files(inner):
            root = inner
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _loose_val_files(root)
    if loose and not folders:
        labels = _find_labels_file(root)
        return ImageNetLayout(
            "flat", root, labels_file=labels, reason=f"flat ILSVRC2012_val_* files, labels {labels}"
        )
    if not folders:
        raise InvalidArgument(
            f"{root} holds neither class folders nor ILSVRC2012_val_*.JPEG files; pass "
            "--data-root pointing to an ImageNet validation folder"
        )
    also = f" (its {len(loose)} loose ILSVRC2012_val_ files are ignored)" if loose else ""
    if all(f.isdigit() for f in folders):
        v2 = " (ImageNetV2 layout)" if _V2_NAME.search(str(root)) else ""
        return ImageNetLayout(
            "folders", root, "index", reason=f"class folders named by index{v2}{also}"
        )
    if not all(WNID.fullmatch(f) for f in folders):
        return ImageNetLayout("folders", root, "name", reason=f"class folders by name{also}")
    subset = _subset_from_name(root.name, set_name)
    why = "named so"
    if subset is None:
        for key in SUBSETS:
            if set(folders) == set(class_list(f"{key}_synsets")):
                subset, why = key, "holds exactly its 200 classes"
    if subset is None:
        reason = f"WordNet-id class folders, {len(folders)} of ImageNet's 1000 classes{also}"
        within = [k for k in SUBSETS if set(folders) <= set(class_list(f"{k}_synsets"))]
        if within and len(folders) > 1:  # ambiguous: say how to pick the 200-class protocol
            names = " and ".join(SUBSETS[k] for k in within)
            reason += (
                f" (all among {names}'s 200: name the folder or eval set "
                f"{within[0].replace('_', '-')} to score on those 200 logits only)"
            )
        return ImageNetLayout("folders", root, "wnid", reason=reason)
    reason = f"{SUBSETS[subset]} ({why}): scored on its 200 classes' logits only{also}"
    return ImageNetLayout("folders", root, "wnid", subset, reason=reason)


def _loose_val_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and VAL_FILE.fullmatch(p.name)]


def _find_labels_file(root: Path) -> Path:
    """The labels file of a flat val folder: in the folder or beside it."""
    for where in (root, root.parent):
        solution = where / "LOC_val_solution.csv"
        if solution.is_file():
            return solution
        texts = [p for p in sorted(where.glob("*.txt")) if _first_line(p)]
        wnid_files = [p for p in texts if WNID.fullmatch(_first_line(p))]
        if len(wnid_files) > 1:
            raise InvalidArgument(
                f"{root}: several labels files ({', '.join(p.name for p in wnid_files)}); "
                "keep the one with a wnid per line for these images"
            )
        if wnid_files:
            return wnid_files[0]
        numeric = [p for p in texts if _first_line(p).isdigit()]
        if numeric:
            raise InvalidArgument(
                f"{numeric[0]} holds numbers (the devkit's ILSVRC2012_IDs, not model indices); "
                "write one wnid per line instead, or use LOC_val_solution.csv"
            )
    raise InvalidArgument(
        f"{root} holds flat ILSVRC2012_val_* images but no labels file beside them; add "
        "LOC_val_solution.csv or a .txt with one wnid per line (line k: ILSVRC2012_val_k)"
    )


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip().split(",")[0]
    except (OSError, UnicodeDecodeError):
        return ""


def _read_labels(labels_file: Path) -> dict[int, str]:
    """Image number -> wnid, from a wnid-per-line file or LOC_val_solution.csv."""
    out: dict[int, str] = {}
    if labels_file.suffix.lower() == ".csv":
        with open(labels_file, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                m = VAL_FILE.fullmatch(f"{row.get('ImageId', '')}.JPEG")
                tokens = (row.get("PredictionString") or "").split()
                if not m or not tokens or not WNID.fullmatch(tokens[0]):
                    raise InvalidArgument(
                        f"{labels_file}: row {row!r} is not 'ILSVRC2012_val_N,wnid x y x y'"
                    )
                out[int(m.group(1))] = tokens[0]
        return out
    for k, line in enumerate(labels_file.read_text(encoding="utf-8").split(), start=1):
        if not WNID.fullmatch(line):
            raise InvalidArgument(f"{labels_file}: line {k} is {line!r}, not a wnid")
        out[k] = line
    return out


@functools.cache
def _wnid_positions() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


def _wnid_index(wnid: str, where: str) -> int:
    index = _wnid_positions()
    if wnid not in index:
        raise InvalidArgument(
            f"{where}: {wnid!r} is not one of ImageNet-1k's 1000 wnids (is this ImageNet-21k?)"
        )
    return index[wnid]


def _class_of_folder(folder: str, naming: str, classes: tuple[str, ...], root: Path) -> int:
    from vcheck.data.image_folder import folder_to_class

    if naming == "wnid":
        return _wnid_index(folder, f"class folder {folder!r} in {root}")
    return folder_to_class([folder], classes, root)[folder]


def load_imagenet(name: str, root: Path, cfg: ModelCfg) -> tuple[FileEvalSet, ImageNetLayout]:
    """An ImageNet copy as an eval set for a 1000-class model, and the layout detected."""
    if len(cfg.classes) != 1000:
        raise InvalidArgument(
            f"eval set {name!r} is ImageNet-1k, but the model has {len(cfg.classes)} classes"
        )
    layout = detect_layout(root, name)
    scan = _Scan()
    labels: list[int] = []
    if layout.kind == "flat":
        _scan_flat(layout.root, scan)
        numbers = _read_labels(layout.labels_file)
        for path in scan.files:
            k = int(VAL_FILE.fullmatch(path.name).group(1))
            if k not in numbers:
                raise InvalidArgument(
                    f"labels file {layout.labels_file} does not match {layout.root}: it has no "
                    f"entry for {path.name} ({len(numbers)} entries); use the labels file of "
                    "these images"
                )
            labels.append(_wnid_index(numbers[k], str(layout.labels_file)))
    else:
        for folder in sorted(p.name for p in layout.root.iterdir() if p.is_dir()):
            if folder.startswith("."):
                continue
            c = _class_of_folder(folder, layout.naming, cfg.classes, layout.root)
            before = len(scan.files)
            _scan(layout.root / folder, scan)
            labels += [c] * (len(scan.files) - before)
    classes = cfg.classes
    label_tensor = torch.tensor(labels, dtype=torch.long)
    ids = [os.path.relpath(p, layout.root) for p in scan.files]
    extra: dict = {"notes": [f"{layout.explanation}; {len(ids)} images"]}
    if layout.subset is not None:
        keep = [_wnid_index(w, layout.subset) for w in class_list(f"{layout.subset}_synsets")]
        position = {c: i for i, c in enumerate(keep)}
        label_tensor = torch.tensor([position[c] for c in labels], dtype=torch.long)
        classes = tuple(cfg.classes[c] for c in keep)
        extra["class_subset"] = keep
    if scan.empty:
        extra["skipped"] = [os.path.relpath(p, layout.root) for p in scan.empty]
        extra["notes"].append(
            f"skipped {len(scan.empty)} empty (zero-byte) image files "
            f"(e.g. {extra['skipped'][0]}); --strict fails on them"
        )
    return (
        FileEvalSet(
            name=name,
            ids=ids,
            labels=label_tensor,
            classes=classes,
            fingerprint=_fingerprint(ids, scan.files, label_tensor, layout),
            source=f"ImageNet {layout.root}",
            extra=extra,
            paths=[str(p) for p in scan.files],
            transform=_transform(cfg),
            input_size=cfg.input_size,
        ),
        layout,
    )


def _scan_flat(root: Path, out: _Scan) -> None:
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_file() and VAL_FILE.fullmatch(entry.name):
            (out.empty if entry.stat().st_size == 0 else out.files).append(Path(entry.path))


def _transform(cfg: ModelCfg):
    from vcheck.data.image_folder import model_transform

    return model_transform(cfg)


def _fingerprint(
    ids: list[str], paths: list[Path], labels: torch.Tensor, layout: ImageNetLayout
) -> str:
    """Names, sizes, mtimes, labels and class subset: cheap, and any edit changes it."""
    h = hashlib.sha256(f"{layout.kind}|{layout.subset}\n".encode())
    for rel, p in zip(ids, paths, strict=True):
        st = os.stat(p)
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()
