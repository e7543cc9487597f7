"""ImageNet copies in every layout (vcheck.data.imagenet): what a team's folder maps to."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from _imagenet_trees import (
    CLASSES,
    R_CLASSES,
    expected_labels,
    flat_tree,
    folder_tree,
    imagenet_r_tree,
    v2_tree,
    write_jpeg,
)
from torch import nn

from vcheck.config import VcheckConfig
from vcheck.data import imagenet
from vcheck.data.imagenet import class_list, detect_layout, imagenet_wnids, load_imagenet
from vcheck.data.label_sets import load_real, match_files
from vcheck.data.sources import load_eval_set
from vcheck.errors import InvalidArgument, MissingArtefactError
from vcheck.models.base import ModelCfg, finalize
from vcheck.predictions import drop_undecodable, get_predictions

CATEGORIES = tuple(torchvision.models.ConvNeXt_Tiny_Weights.DEFAULT.meta["categories"])
# ImageNet classes at a tiny input size, so decoding stays cheap.
CFG = ModelCfg(domain="imagenet", classes=CATEGORIES, input_size=(3, 16, 16), resize=18)


def labels_of(root: Path, name: str = "imagenet_val") -> list[int]:
    return load_imagenet(name, root, CFG)[0].labels.tolist()


# -- class lists --------------------------------------------------------------------------------


def test_shipped_class_lists_are_imagenets_in_index_order():
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)
    assert [wnids[i] for _, i, _ in CLASSES] == [w for w, _, _ in CLASSES]
    for subset in ("imagenet_a_synsets", "imagenet_r_synsets"):
        members = class_list(subset)
        assert len(set(members)) == 200 and set(members) <= set(wnids)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")
def test_shipped_class_lists_equal_timms():
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    shipped = Path(imagenet.__file__).parent / "_info"
    for name in ("imagenet_synsets", "imagenet_a_synsets", "imagenet_r_synsets"):
        theirs = (info / f"{name}.txt").read_text().split()
        assert (shipped / f"{name}.txt").read_text().split() == theirs


# -- layouts ------------------------------------------------------------------------------------


def test_a_subset_of_wnid_folders_maps_to_the_standard_indices(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    eval_set, layout = load_imagenet("imagenet_val", root, CFG)
    assert eval_set.labels.tolist() == expected_labels("wnid") == [0, 0, 1, 1, 151, 151]
    assert (layout.kind, layout.naming, layout.subset) == ("folders", "wnid", None)
    assert "WordNet-id class folders, 3 of ImageNet's 1000 classes" in layout.explanation
    assert eval_set.extra["notes"] == [f"{layout.explanation}; 6 images"]
    assert eval_set.classes == CATEGORIES


def test_a_parent_folder_with_val_inside_is_followed(tmp_path):
    folder_tree(tmp_path / "imagenet" / "val", "wnid")
    assert labels_of(tmp_path / "imagenet") == [0, 0, 1, 1, 151, 151]


@pytest.mark.parametrize("naming", ["index", "name"])
def test_index_and_class_name_folders(tmp_path, naming):
    root = folder_tree(tmp_path / "val", naming)
    assert labels_of(root) == expected_labels(naming)
    assert detect_layout(root).naming == naming


def test_imagenet_v2_numeric_folders(tmp_path):
    root = v2_tree(tmp_path)
    eval_set, layout = load_imagenet("imagenet_v2", root, CFG)
    assert sorted(eval_set.labels.tolist()) == [0, 0, 1, 1, 151, 151]
    assert "ImageNetV2 layout" in layout.explanation


@pytest.mark.parametrize("labels", ["txt", "csv"])
def test_flat_val_files_with_a_labels_file(tmp_path, labels):
    root = flat_tree(tmp_path, labels)
    eval_set, layout = load_imagenet("imagenet_val", root, CFG)
    assert eval_set.labels.tolist() == [0, 0, 1, 1, 151, 151]
    assert eval_set.ids[0] == "ILSVRC2012_val_00000001.JPEG"
    assert layout.kind == "flat"
    assert layout.labels_file.name == (
        "val_labels.txt" if labels == "txt" else "LOC_val_solution.csv"
    )


def test_flat_subset_of_val_with_the_full_labels_file(tmp_path):
    root = flat_tree(tmp_path, "txt")
    (root / "ILSVRC2012_val_00000001.JPEG").unlink()  # the usual CI subset of val
    assert labels_of(root) == [0, 1, 1, 151, 151]


def test_labels_file_that_does_not_match_the_folder(tmp_path):
    root = flat_tree(tmp_path, "txt")
    write_jpeg(root / "ILSVRC2012_val_00000009.JPEG", seed=9)
    with pytest.raises(
        InvalidArgument, match=r"val_labels.txt does not match .*ILSVRC2012_val_00000009"
    ):
        load_imagenet("imagenet_val", root, CFG)


def test_flat_folder_without_labels_file(tmp_path):
    root = flat_tree(tmp_path, "txt")
    (tmp_path / "val_labels.txt").unlink()
    with pytest.raises(
        InvalidArgument, match=r"no labels file beside them; add LOC_val_solution\.csv"
    ):
        load_imagenet("imagenet_val", root, CFG)


def test_devkit_numeric_ground_truth_is_refused_with_the_reason(tmp_path):
    root = flat_tree(tmp_path, "txt")
    (tmp_path / "val_labels.txt").write_text("490\n361\n171\n822\n297\n482\n")
    with pytest.raises(InvalidArgument, match="ILSVRC2012_IDs, not model indices"):
        load_imagenet("imagenet_val", root, CFG)


def test_wnid_that_is_not_in_imagenet_1k(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    write_jpeg(root / "n00000001" / "x.JPEG", seed=1)
    with pytest.raises(
        InvalidArgument, match=r"'n00000001' is not one of ImageNet-1k's 1000 wnids"
    ):
        load_imagenet("imagenet_val", root, CFG)


def test_missing_folder_and_folder_without_images(tmp_path):
    with pytest.raises(MissingArtefactError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="neither class folders nor ILSVRC2012_val"):
        detect_layout(tmp_path / "empty")


def test_model_with_other_classes_is_refused(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    cfg = dataclasses.replace(CFG, classes=("a", "b"))
    with pytest.raises(InvalidArgument, match="ImageNet-1k, but the model has 2 classes"):
        load_imagenet("imagenet_val", root, cfg)


# -- ImageNet-A / -R ----------------------------------------------------------------------------


def test_imagenet_r_by_folder_name_uses_its_200_classes(tmp_path):
    root = imagenet_r_tree(tmp_path)
    eval_set, layout = load_imagenet("imagenet_r", root, CFG)
    r_wnids = class_list("imagenet_r_synsets")
    assert layout.subset == "imagenet_r" and "ImageNet-R (named so)" in layout.explanation
    assert len(eval_set.classes) == 200
    keep = eval_set.extra["class_subset"]
    assert [imagenet_wnids()[i] for i in keep] == list(r_wnids)
    positions = [r_wnids.index(w) for w, _ in R_CLASSES for _ in range(2)]
    assert eval_set.labels.tolist() == positions
    assert [eval_set.classes[p] for p in positions[::2]] == [CATEGORIES[i] for _, i in R_CLASSES]


def test_all_200_imagenet_a_classes_are_recognised_without_the_name(tmp_path):
    root = tmp_path / "mine"
    for wnid in class_list("imagenet_a_synsets"):
        (root / wnid).mkdir(parents=True)
    layout = detect_layout(root)
    assert layout.subset == "imagenet_a" and "holds exactly its 200 classes" in layout.reason


def test_a_val_subset_is_not_mistaken_for_imagenet_r_but_the_choice_is_explained(tmp_path):
    root = imagenet_r_tree(tmp_path, name="val")  # R's wnids, but not named or complete
    layout = detect_layout(root)
    assert layout.subset is None
    assert "(all among ImageNet-R's 200: name the folder or eval set imagenet-r" in layout.reason


def test_loose_val_files_beside_class_folders_are_ignored_and_said_so(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    write_jpeg(root / "ILSVRC2012_val_00000042.JPEG", seed=42)
    eval_set, layout = load_imagenet("imagenet_val", root, CFG)
    assert len(eval_set) == 6
    assert "its 1 loose ILSVRC2012_val_ files are ignored" in layout.explanation


class _Index(nn.Module):
    """Logit k = k (+ a pixel term), so the restricted logits are easy to predict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(1000.0).expand(len(x), 1000) + x.mean() * 0


def _model(cfg: ModelCfg = CFG):
    return finalize("index", _Index(), cfg, "test", torch.device("cpu"))


def test_imagenet_r_predictions_are_restricted_to_its_classes(tmp_path):
    eval_set, _ = load_imagenet("imagenet_r", imagenet_r_tree(tmp_path), CFG)
    preds = get_predictions(_model(), eval_set, cache=None, batch_size=4)
    assert preds.logits.shape == (6, 200)
    keep = eval_set.extra["class_subset"]
    assert preds.logits[0].tolist() == [float(i) for i in keep]


# -- bad files ----------------------------------------------------------------------------------


def test_zero_byte_images_are_skipped_and_counted(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    (root / "n01440764" / "empty.JPEG").write_bytes(b"")
    config = VcheckConfig(data_root=root, cache_dir=tmp_path / "c")
    eval_set = load_eval_set("imagenet_val", CFG, config)
    assert len(eval_set) == 6
    assert eval_set.extra["notes"][1].startswith("skipped 1 empty (zero-byte) image files")
    strict = dataclasses.replace(config, strict=True)
    with pytest.raises(InvalidArgument, match=r"1 empty \(zero-byte\) image files.*--strict"):
        load_eval_set("imagenet_val", CFG, strict)


def test_undecodable_image_is_dropped_after_one_pass(tmp_path):
    root = folder_tree(tmp_path / "val", "wnid")
    (root / "n01443537" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"\xff\xd8 not a jpeg" * 9)
    eval_set, _ = load_imagenet("imagenet_val", root, CFG)
    preds = get_predictions(_model(), eval_set, cache=None, batch_size=4)
    assert preds.undecodable == (2,)
    kept, kept_set, line = drop_undecodable(preds, eval_set)
    assert len(kept) == len(kept_set) == 5
    assert kept.labels.tolist() == kept_set.labels.tolist() == [0, 0, 1, 151, 151]
    assert "n01443537/ILSVRC2012_val_00000003.JPEG" not in kept_set.ids
    assert line == (
        "vcheck: imagenet_val: skipped 1 of 6 images that could not be decoded "
        "(e.g. n01443537/ILSVRC2012_val_00000003.JPEG); --strict fails on them"
    )


# -- label sets by file name (ReaL etc.) -----------------------------------------------------------


@pytest.mark.parametrize("layout", ["wnid", "flat"])
def test_real_labels_match_these_layouts_by_file_name(tmp_path, layout):
    root = folder_tree(tmp_path / "val", "wnid") if layout == "wnid" else flat_tree(tmp_path)
    eval_set, _ = load_imagenet("imagenet_val", root, CFG)
    real = [[] for _ in range(50_000)]
    real[0], real[2] = [0, 5], [1]
    path = tmp_path / "real.json"
    path.write_text(json.dumps(real))
    labels = load_real(path, 1000)
    matched = match_files(eval_set.ids, labels)
    assert matched.all()
    assert [labels[n.split("/")[-1]] for n in np.array(eval_set.ids)[[0, 2]]] == [(0, 5), (1,)]


@pytest.mark.parametrize("layout", ["wnid", "flat"])
def test_fairness_metadata_keyed_by_file_name_fits_these_layouts(tmp_path, layout):
    from vcheck.data.metadata import attach_metadata, parse_metadata_setting

    root = folder_tree(tmp_path / "val", "wnid") if layout == "wnid" else flat_tree(tmp_path)
    eval_set, _ = load_imagenet("imagenet_val", root, CFG)
    rows = [f"ILSVRC2012_val_{k:08d}.JPEG,{'north' if k % 2 else 'south'}" for k in range(9, 0, -1)]
    (tmp_path / "meta.csv").write_text("file_name,region\n" + "\n".join(rows) + "\n")
    spec = parse_metadata_setting({"imagenet_val": "meta.csv"}, tmp_path)["imagenet_val"]
    regions = attach_metadata(eval_set, spec).metadata["region"].tolist()
    assert regions == ["north", "south"] * 3
