"""A multi-object evaluation set derived from Fashion-MNIST, whose label sets are true by
construction: ``fmnist_multi``.

Each 28x28 image holds a dominant item (a Fashion-MNIST image at full size: its class is
the "original label") and, in some images, smaller items composited into the corners with a
pixel-wise maximum (items are bright on black):

======  =====  ======================================================================
share   kind   content and label sets
======  =====  ======================================================================
5 %     blend  two items averaged at full size: ambiguous, so the ReaL set is empty and
               the Shankar entry is ``problematic`` (both formats exclude it)
30 %    single the dominant item alone: set {dominant}
40 %    pair   plus a 14x14 item in a corner: set {dominant, secondary}
25 %    triple plus a 10x10 item in the next corner as well: ReaL set {all three};
               Shankar: correct {dominant, secondary}, unclear {tiny item}
======  =====  ======================================================================

Shankar entries list as "wrong" the dominant item's fine-grained neighbours (tops,
footwear) that are in no item: the candidates a reviewer would have rejected.

The set is a fixed dataset, like the Fashion-MNIST split it comes from: its composition
uses :data:`SEED`, not ``--seed``, so that its label files can be shipped
(``fixtures/multilabel/``) and read by the same loaders as ImageNet's
(:mod:`vcheck.data.label_sets`). Images are rebuilt from the installed Fashion-MNIST test
split on demand (2,000 composites take about 0.1 s, no cache needed);
sample ids are the file names ``fmnist_multi_00001.png`` ... that the label files key on.

``python -m vcheck.data.multi_object --out fixtures/multilabel`` writes the label files,
plus, with ``--reference MODEL``, a hard slice (the images the reference model gets wrong)
with mistake metadata in the imagenet-mistakes format.

Public names: NAME, SEED, SIZE, UNIVERSE, Composition, plan, render, build_eval_set,
real_sets, shankar_entries, multi_hot, write_label_files, mistake_metadata, main.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vcheck.data.evalset import TensorEvalSet
from vcheck.data.label_sets import FileUniverse

NAME = "fmnist_multi"
SEED = 0
SIZE = 2000
UNIVERSE = FileUniverse("fmnist_multi_{index:05d}.png", SIZE)
BLEND, SINGLE, PAIR, TRIPLE = 0, 1, 2, 3
KIND_SHARES = (0.05, 0.30, 0.40, 0.25)
SECONDARY_SIDE, TINY_SIDE = 14, 10
# Item groups whose members are fine-grained confusions of each other (mistake metadata).
GROUPS = ((0, 2, 4, 6), (5, 7, 9), (1,), (3,), (8,))


@dataclass(frozen=True)
class Composition:
    """What each composite is made of: source indices (dominant, secondary, tiny; -1 where
    absent), its kind and the corner of the secondary item (0..3, clockwise from top-left)."""

    items: np.ndarray  # (N, 3) int64
    kinds: np.ndarray  # (N,) int64
    corners: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.kinds)


def plan(n: int, num_sources: int, seed: int) -> Composition:
    """A seeded composition of ``n`` images from ``num_sources`` source images (three
    distinct sources per image)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(4, size=n, p=KIND_SHARES)
    corners = rng.integers(0, 4, size=n)
    items = rng.integers(0, num_sources, size=(n, 3))
    while True:  # redraw rows that reuse a source image
        dup = (items[:, 0] == items[:, 1]) | (items[:, 0] == items[:, 2])
        dup |= items[:, 1] == items[:, 2]
        if not dup.any():
            break
        items[dup] = rng.integers(0, num_sources, size=(int(dup.sum()), 3))
    items[kinds == SINGLE, 1:] = -1
    items[kinds == PAIR, 2] = -1
    items[kinds == BLEND, 2] = -1
    return Composition(items.astype(np.int64), kinds.astype(np.int64), corners.astype(np.int64))


def _corner(corner: int, side: int) -> tuple[int, int]:
    far = 28 - side
    return ((0, 0), (0, far), (far, far), (far, 0))[corner]


def _resized(pixels: torch.Tensor, side: int) -> torch.Tensor:
    x = pixels.float() / 255
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)


def render(pixels: torch.Tensor, comp: Composition) -> torch.Tensor:
    """The composites as uint8 (N, 1, 28, 28) from source ``pixels`` uint8 (M, 1, 28, 28)."""
    n = len(comp)
    canvas = pixels[torch.from_numpy(np.maximum(comp.items[:, 0], 0))].float() / 255
    blend = np.flatnonzero(comp.kinds == BLEND)
    if len(blend):
        other = pixels[torch.from_numpy(comp.items[blend, 1])].float() / 255
        canvas[blend] = (canvas[blend] + other) / 2
    placements = (  # (item column, side, corner of each image)
        (1, SECONDARY_SIDE, comp.corners, comp.kinds >= PAIR),
        (2, TINY_SIDE, (comp.corners + 1) % 4, comp.kinds == TRIPLE),
    )
    for column, side, corners, present in placements:
        for corner in range(4):
            rows = np.flatnonzero(present & (corners == corner))
            small = _resized(pixels[torch.from_numpy(comp.items[rows, column])], side)
            rows = torch.from_numpy(rows)
            r, c = _corner(corner, side)
            region = canvas[rows, :, r : r + side, c : c + side]
            canvas[rows, :, r : r + side, c : c + side] = torch.maximum(region, small)
    return (canvas * 255).round_().clamp_(0, 255).to(torch.uint8).reshape(n, 1, 28, 28)


def real_sets(comp: Composition, labels: np.ndarray) -> list[tuple[int, ...]]:
    """ReaL-format label sets: every item's class (sorted), empty for blends."""
    out = []
    for items, kind in zip(comp.items, comp.kinds, strict=True):
        present = [int(labels[i]) for i in items if i >= 0]
        out.append(() if kind == BLEND else tuple(sorted(set(present))))
    return out


def shankar_entries(
    comp: Composition, labels: np.ndarray, classes: tuple[str, ...]
) -> dict[str, dict]:
    """Shankar-format entries keyed by file name (class names as labels; empty lists left
    out, as the format allows)."""
    out: dict[str, dict] = {}
    for i, (items, kind) in enumerate(zip(comp.items, comp.kinds, strict=True)):
        name = UNIVERSE.name(i)
        if kind == BLEND:
            out[name] = {"problematic": True}
            continue
        correct = {int(labels[j]) for j in items[:2] if j >= 0}
        unclear = {int(labels[items[2]])} - correct if items[2] >= 0 else set()
        dominant = int(labels[items[0]])
        wrong = set(GROUPS[_group(dominant)]) - correct - unclear
        out[name] = {
            k: [classes[c] for c in sorted(v)]
            for k, v in (("correct", correct), ("wrong", wrong), ("unclear", unclear))
            if v
        }
    return out


def multi_hot(comp: Composition, labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(N, C) float targets for training: 1 for every item's class (blends: both items)."""
    targets = torch.zeros(len(comp), num_classes)
    for column in range(3):
        rows = np.flatnonzero(comp.items[:, column] >= 0)
        targets[rows, labels[comp.items[rows, column]]] = 1.0
    return targets


def build_eval_set(source: TensorEvalSet, n: int = SIZE, seed: int = SEED) -> TensorEvalSet:
    """The multi-object set built from Fashion-MNIST test ``source``; ``label_sets`` holds
    its ReaL sets (by construction) and ``labels`` the dominant items' classes."""
    comp = plan(n, len(source), seed)
    pixels = render(source.pixels, comp)
    labels = source.labels.numpy()
    original = torch.from_numpy(labels[comp.items[:, 0]].copy())
    h = hashlib.sha256(b"fmnist_multi|")
    h.update(pixels.numpy().tobytes())
    h.update(original.numpy().tobytes())
    return TensorEvalSet(
        name=NAME,
        ids=[UNIVERSE.name(i) for i in range(n)],
        labels=original,
        classes=source.classes,
        fingerprint=h.hexdigest(),
        source=f"{n} multi-object composites of {source.source}, seed {seed}",
        label_sets=[list(s) for s in real_sets(comp, labels)],
        pixels=pixels,
    )


# -- label files ---------------------------------------------------------------------------------


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n")


def write_label_files(source: TensorEvalSet, out: Path) -> dict[str, Path]:
    """Write ``fmnist_multi.real.json`` and ``fmnist_multi.shankar.json`` into ``out``."""
    comp = plan(SIZE, len(source), SEED)
    labels = source.labels.numpy()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"real": out / f"{NAME}.real.json", "shankar": out / f"{NAME}.shankar.json"}
    _dump(paths["real"], [list(s) for s in real_sets(comp, labels)])
    _dump(paths["shankar"], shankar_entries(comp, labels, source.classes))
    return paths


def _group(c: int) -> int:
    return next(g for g, members in enumerate(GROUPS) if c in members)


def mistake_metadata(
    eval_set: TensorEvalSet, predictions: np.ndarray, shankar: dict[str, dict]
) -> dict[str, dict]:
    """The reference model's mistakes (top-1 outside correct ∪ unclear) in the
    imagenet-mistakes format. Category and severity follow a fixed rule standing in for
    human review: a confusion within one item group (tops, footwear) is a "Fine-grained
    error" of "Minor" severity, anything else "Non-prototypical" and "Major"."""
    classes = eval_set.classes
    out = {}
    for name, original, pred in zip(
        eval_set.ids, eval_set.labels.tolist(), predictions.tolist(), strict=True
    ):
        entry = shankar[name]
        accepted = set(entry.get("correct", [])) | set(entry.get("unclear", []))
        if entry.get("problematic") or classes[pred] in accepted:
            continue
        fine = _group(pred) == _group(original)
        out[name] = {
            "top_prediction": int(pred),
            "failure category": "Fine-grained error" if fine else "Non-prototypical",
            "failure severity": "Minor" if fine else "Major",
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from vcheck.data.fashion_mnist import load_fashion_mnist

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "vcheck")
    parser.add_argument(
        "--reference", metavar="MODEL", help="also write a hard slice and its mistakes"
    )
    args = parser.parse_args(argv)
    source = load_fashion_mnist("test", args.data_root, args.cache_dir / "data")
    paths = write_label_files(source, args.out)
    if args.reference:
        from vcheck.models import resolve_model

        model = resolve_model(args.reference).load(torch.device("cpu"))
        eval_set = build_eval_set(source)
        with torch.inference_mode():
            preds = model.module(eval_set.pixels.float() / 255).argmax(1).numpy()
        shankar = json.loads(paths["shankar"].read_text())
        mistakes = mistake_metadata(eval_set, preds, shankar)
        paths["mistakes"] = args.out / f"{NAME}.{args.reference}_mistakes.json"
        paths["slice"] = args.out / f"{NAME}.hard.json"
        _dump(paths["mistakes"], mistakes)
        _dump(paths["slice"], sorted(mistakes))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
