"""The multi-object set derived from Fashion-MNIST: label sets true by construction, the same
images every time, and shipped label files that the loaders read and that match the set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcheck.data import label_sets as L
from vcheck.data import multi_object as M
from vcheck.data.evalset import TensorEvalSet
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.evaluate.multilabel import construction_mismatch
from vcheck.models.zoo import FASHION_MNIST_CLASSES

SHIPPED = Path(__file__).resolve().parents[1] / "fixtures" / "multilabel"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def source(cache_root) -> TensorEvalSet:
    return load_fashion_mnist("test", None, cache_root / "data")


def toy_source() -> TensorEvalSet:
    """Four flat 'items' of distinct brightness and class, easy to recognise in a composite."""
    pixels = torch.stack(
        [torch.full((1, 28, 28), v, dtype=torch.uint8) for v in (40, 80, 120, 160)]
    )
    return TensorEvalSet(
        name="toy",
        ids=["a", "b", "c", "d"],
        labels=torch.tensor([0, 1, 2, 3]),
        classes=FASHION_MNIST_CLASSES,
        fingerprint="toy",
        source="toy",
        pixels=pixels,
    )


def test_plan_is_seeded_and_uses_three_distinct_sources():
    a, b = M.plan(500, 50, seed=3), M.plan(500, 50, seed=3)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.kinds, b.kinds)
    assert not np.array_equal(a.items, M.plan(500, 50, seed=4).items)
    items = a.items
    for x, y in ((0, 1), (0, 2), (1, 2)):
        both = (items[:, x] >= 0) & (items[:, y] >= 0)
        assert (items[both, x] != items[both, y]).all()
    assert (items[a.kinds == M.SINGLE, 1:] == -1).all()
    assert (items[a.kinds == M.PAIR, 2] == -1).all() and (items[a.kinds == M.PAIR, 1] >= 0).all()
    assert (items[a.kinds == M.TRIPLE] >= 0).all()
    shares = np.bincount(M.plan(20_000, 50, seed=0).kinds, minlength=4) / 20_000
    assert shares == pytest.approx(M.KIND_SHARES, abs=0.01)


def test_render_places_each_item_where_its_label_says():
    source = toy_source()
    comp = M.Composition(
        items=np.array([[0, -1, -1], [1, 2, -1], [3, 0, 2], [0, 3, -1]]),
        kinds=np.array([M.SINGLE, M.PAIR, M.TRIPLE, M.BLEND]),
        corners=np.array([0, 2, 1, 0]),
    )
    images = M.render(source.pixels, comp)
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 28, 28)
    assert (images[0] == 40).all()  # a single item is the source image itself
    # pair: item 2 (120) drawn 14x14 in the bottom-right corner over item 1 (80)
    assert (images[1, 0, 14:, 14:] == 120).all() and (images[1, 0, :14, :14] == 80).all()
    # triple: dominant 160 is brighter than both small items (pixel-wise max keeps it)
    assert (images[2] == 160).all()
    # blend: the average of two full-size items
    assert (images[3] == 100).all()
    sets = M.real_sets(comp, source.labels.numpy())
    assert sets == [(0,), (1, 2), (0, 2, 3), ()]
    shankar = M.shankar_entries(comp, source.labels.numpy(), FASHION_MNIST_CLASSES)
    assert shankar[M.UNIVERSE.name(2)]["correct"] == ["T-shirt/top", "Dress"]
    assert shankar[M.UNIVERSE.name(2)]["unclear"] == ["Pullover"]
    assert shankar[M.UNIVERSE.name(3)] == {"problematic": True}
    targets = M.multi_hot(comp, source.labels.numpy(), 10)
    assert targets[3, :4].tolist() == [1, 0, 0, 1]  # a blend holds both of its items


def test_eval_set_is_deterministic_and_labelled_by_construction(source):
    first, second = M.build_eval_set(source), M.build_eval_set(source)
    assert first.fingerprint == second.fingerprint
    assert torch.equal(first.pixels, second.pixels)
    assert len(first) == M.SIZE and first.ids[0] == "fmnist_multi_00001.png"
    assert first.ids == [M.UNIVERSE.name(i) for i in range(M.SIZE)]
    # every original (dominant) label is in its own set, except for the ambiguous blends
    labelled = [(int(y), s) for y, s in zip(first.labels, first.label_sets, strict=True) if s]
    assert all(y in s for y, s in labelled)
    assert M.SIZE - len(labelled) == sum(1 for s in first.label_sets if not s) > 0
    subset = first.subset([5, 9])
    assert subset.ids == [first.ids[5], first.ids[9]]
    assert subset.label_sets == [first.label_sets[5], first.label_sets[9]]


def test_shipped_label_files_match_the_set_and_load(source, tmp_path):
    paths = M.write_label_files(source, tmp_path)
    for kind, path in paths.items():  # the shipped files are exactly what the builder writes
        assert path.read_bytes() == (SHIPPED / path.name).read_bytes(), kind
    eval_set = M.build_eval_set(source)
    real = L.load_real(SHIPPED / "fmnist_multi.real.json", 10, M.UNIVERSE)
    shankar = L.load_shankar(
        SHIPPED / "fmnist_multi.shankar.json", FASHION_MNIST_CLASSES, M.UNIVERSE
    )
    from vcheck.evaluate.multilabel import LabelSetSpec

    for fmt, entries in (("real", real), ("shankar", shankar)):
        spec = LabelSetSpec(fmt, fmt, SHIPPED / "x", None, M.UNIVERSE, {}, entries)
        assert construction_mismatch(eval_set, spec) is None
    assert sum(e.problematic for e in shankar.values()) == sum(1 for s in real.values() if not s)


def test_shipped_hard_slice_holds_the_reference_models_mistakes(source):
    files = L.load_file_list(SHIPPED / "fmnist_multi.hard.json", M.UNIVERSE)
    mistakes = L.load_mistakes(SHIPPED / "fmnist_multi.fmnist_mlp_mistakes.json", 10, M.UNIVERSE)
    shankar = json.loads((SHIPPED / "fmnist_multi.shankar.json").read_text())
    assert sorted(files) == sorted(mistakes.index)
    for name, row in mistakes.iterrows():  # each recorded prediction is outside the accepted set
        accepted = set(shankar[name].get("correct", [])) | set(shankar[name].get("unclear", []))
        assert FASHION_MNIST_CLASSES[row["top_prediction"]] not in accepted
    assert set(mistakes["category"]) == {"Fine-grained error", "Non-prototypical"}


def test_command_line_writes_the_label_files(cache_root, tmp_path, capsys):
    assert M.main(["--out", str(tmp_path / "out"), "--cache-dir", str(cache_root)]) == 0
    assert (tmp_path / "out" / "fmnist_multi.real.json").is_file()
    assert "wrote real" in capsys.readouterr().out
