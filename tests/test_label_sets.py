"""Label-set loaders: the real ReaL file, hand-built files of every format, and every kind of
malformed file (named with its first bad entry)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcheck.data import label_sets as L
from vcheck.errors import MissingArtefactError, VcheckError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL = FIXTURES / "imagenet" / "real.json"
TINY = L.FileUniverse("img_{index:03d}.png", 4)
CLASSES = ("cat", "dog", "fox")


def write(tmp_path: Path, name: str, obj: object) -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


# -- the real files -------------------------------------------------------------------------------


def test_real_json_has_50000_entries_of_which_3163_are_empty():
    sets = L.load_real(REAL, 1000)
    assert len(sets) == 50_000
    assert sum(1 for s in sets.values() if not s) == 3163
    assert sum(1 for s in sets.values() if len(s) > 1) == 7443
    assert max(len(s) for s in sets.values()) == 9
    # Entry i belongs to ILSVRC2012_val_{i+1:08d}.JPEG: the first file is one of the empty ones.
    assert sets["ILSVRC2012_val_00000001.JPEG"] == ()
    assert sets["ILSVRC2012_val_00000002.JPEG"] == (970, 795)
    assert sets["ILSVRC2012_val_00050000.JPEG"] == tuple(json.loads(REAL.read_text())[-1])


def test_real_json_needs_a_1000_class_model():
    with pytest.raises(L.LabelFileError, match=r"class index \d+, outside \[0, 10\)"):
        L.load_real(REAL, 10)


@pytest.mark.parametrize("name", ["vit3b_mistakes.json", "greedy_soups_mistakes.json"])
def test_published_mistakes_load_with_the_two_oov_spellings_merged(name):
    table = L.load_mistakes(FIXTURES / "imagenet" / name, 1000)
    raw = json.loads((FIXTURES / "imagenet" / name).read_text())
    assert len(table) == len(raw) and table.index.is_unique
    assert set(table["severity"]) <= set(L.SEVERITIES)
    assert "Fine-grained error with OOV" not in set(table["category"])
    spellings = {v["failure category"] for v in raw.values()}
    oov = sum(
        v["failure category"] in ("Fine-grained with OOV", "Fine-grained error with OOV")
        for v in raw.values()
    )
    assert (table["category"] == "Fine-grained with OOV").sum() == oov > 0
    if name == "greedy_soups_mistakes.json":  # this file uses both spellings
        assert {"Fine-grained with OOV", "Fine-grained error with OOV"} <= spellings
    first = next(iter(raw))
    assert table.loc[first, "top_prediction"] == raw[first]["top_prediction"]


# -- hand-built files -----------------------------------------------------------------------------


def test_real_format_keys_entries_by_file_name(tmp_path):
    path = write(tmp_path, "real.json", [[0], [], [1, 2], [2]])
    assert L.load_real(path, 3, TINY) == {
        "img_001.png": (0,),
        "img_002.png": (),
        "img_003.png": (1, 2),
        "img_004.png": (2,),
    }


def test_shankar_format_reads_names_indices_and_problematic_entries(tmp_path):
    path = write(
        tmp_path,
        "shankar.json",
        {
            "img_002.png": {"correct": ["dog"], "wrong": ["cat"], "unclear": [2]},
            "img_004.png": {"problematic": True},
            "img_003.png": {"unclear": ["fox"]},
        },
    )
    entries = L.load_shankar(path, CLASSES, TINY)
    assert entries["img_002.png"] == L.ShankarEntry(frozenset({1}), frozenset({0}), frozenset({2}))
    assert entries["img_004.png"].excluded and entries["img_004.png"].problematic
    assert not entries["img_003.png"].excluded  # unclear alone is still acceptable
    assert "img_001.png" not in entries


def test_shankar_wordnet_ids_map_to_imagenet_indices(tmp_path):
    pytest.importorskip("timm")
    path = write(
        tmp_path,
        "shankar.json",
        {"ILSVRC2012_val_00000007.JPEG": {"correct": ["n01440764"], "wrong": ["n01443537"]}},
    )
    classes = tuple(f"class {i}" for i in range(1000))
    (entry,) = L.load_shankar(path, classes).values()
    assert entry.correct == {0} and entry.wrong == {1}


def test_slice_files_as_json_or_text(tmp_path):
    as_json = write(tmp_path, "m.json", ["img_003.png", "img_001.png"])
    as_text = write(tmp_path, "m.txt", "# ImageNet-M style\nimg_003.png\n\nimg_001.png  # two\n")
    assert L.load_file_list(as_json, TINY) == L.load_file_list(as_text, TINY)
    assert L.load_file_list(as_text, TINY) == ("img_003.png", "img_001.png")


def test_matching_by_file_name_ignores_folders():
    ids = ["n01/ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000009.JPEG", "x\\other.png"]
    assert L.file_names(ids) == [
        "ILSVRC2012_val_00000002.JPEG",
        "ILSVRC2012_val_00000009.JPEG",
        "other.png",
    ]
    wanted = {"ILSVRC2012_val_00000009.JPEG": (1,), "other.png": ()}
    assert L.match_files(ids, wanted).tolist() == [False, True, True]
    assert L.match_files(ids, ["ILSVRC2012_val_00000002.JPEG"]).tolist() == [True, False, False]
    assert L.match_files([], wanted).dtype == np.bool_


# -- malformed files: one error naming the file and the first bad entry ------------------------


MISTAKE = {
    "top_prediction": 1,
    "failure category": "Fine-grained error",
    "failure severity": "Minor",
}
MALFORMED = [
    pytest.param("real", "[[0], [1", r"is not valid JSON \(line 1, column 9", id="not json"),
    pytest.param(
        "real",
        [[0], [1], [2]],
        r"expected 4 entries .*found 3; entry 3 \(img_004.png\) is missing",
        id="real too short",
    ),
    pytest.param(
        "real", [[0]] * 5, r"found 5; entry 4 \(img_005.png\) is one too many", id="real too long"
    ),
    pytest.param("real", {"img_001.png": [0]}, "expected a JSON list", id="real not a list"),
    pytest.param(
        "real",
        [[0], [3], [1], []],
        r"entry 1 \(img_002.png\) has class index 3, outside \[0, 3\)",
        id="real index out of range",
    ),
    pytest.param(
        "real",
        [[0], [1], [-1], []],
        r"entry 2 \(img_003.png\) has class index -1",
        id="real negative index",
    ),
    pytest.param(
        "real",
        [[0], ["dog"], [], []],
        r"entry 1 \(img_002.png\) is \['dog'\]",
        id="real not indices",
    ),
    pytest.param(
        "real",
        [[0], [1, 1], [], []],
        r"entry 1 \(img_002.png\) lists class 1 twice",
        id="real duplicate",
    ),
    pytest.param(
        "shankar",
        {"img_009.png": {"correct": ["cat"]}},
        r"unknown file name 'img_009.png'; expected one of img_001.png ... img_004.png",
        id="shankar unknown file",
    ),
    pytest.param(
        "shankar",
        '{"img_001.png": {"correct": ["cat"]}, "img_001.png": {}}',
        r"entry 'img_001.png' appears twice",
        id="shankar duplicate key",
    ),
    pytest.param(
        "shankar",
        {"img_001.png": {"correct": ["cow"]}},
        r"entry 'img_001.png': 'correct' has unknown label 'cow'",
        id="shankar unknown label",
    ),
    pytest.param(
        "shankar",
        {"img_001.png": {"wrong": [7]}},
        r"'wrong' has class index 7, outside \[0, 3\)",
        id="shankar index out of range",
    ),
    pytest.param(
        "shankar",
        {"img_002.png": {"correct": ["cat", 0]}},
        r"'correct' lists 0 twice",
        id="shankar duplicate label",
    ),
    pytest.param(
        "shankar",
        {"img_002.png": {"correct": ["cat"], "wrong": ["cat"]}},
        r"class 'cat' is both correct and wrong",
        id="shankar two verdicts",
    ),
    pytest.param(
        "shankar", {"img_002.png": {"corect": ["cat"]}}, r"has key 'corect'", id="shankar bad key"
    ),
    pytest.param("shankar", [["cat"]], "expected a JSON object", id="shankar not an object"),
    pytest.param(
        "slice",
        ["img_001.png", "ILSVRC2012_val_00000001.JPEG"],
        r"unknown file name 'ILSVRC2012_val_00000001.JPEG'",
        id="slice unknown file",
    ),
    pytest.param(
        "slice",
        ["img_002.png", "img_001.png", "img_002.png"],
        r"file 'img_002.png' is listed twice",
        id="slice duplicate",
    ),
    pytest.param("slice", [], "names no files", id="slice empty"),
    pytest.param(
        "mistakes",
        {"img_000.png": MISTAKE},
        r"unknown file name 'img_000.png'",
        id="mistakes unknown file",
    ),
    pytest.param(
        "mistakes",
        {"img_001.png": {**MISTAKE, "top_prediction": 3}},
        r"entry 'img_001.png': top_prediction 3 is not a class index",
        id="mistakes out of range",
    ),
    pytest.param(
        "mistakes",
        {"img_001.png": {**MISTAKE, "failure category": "Typo"}},
        r"'failure category' is 'Typo'; expected one of",
        id="mistakes bad category",
    ),
    pytest.param(
        "mistakes",
        {"img_001.png": {**MISTAKE, "failure severity": "Huge"}},
        r"'failure severity' is 'Huge'",
        id="mistakes bad severity",
    ),
    pytest.param(
        "mistakes",
        f'{{"img_001.png": {json.dumps(MISTAKE)}, "img_001.png": {{}}}}',
        "appears twice",
        id="mistakes duplicate",
    ),
]


def _load(kind: str, path: Path):
    if kind == "real":
        return L.load_real(path, 3, TINY)
    if kind == "shankar":
        return L.load_shankar(path, CLASSES, TINY)
    if kind == "slice":
        return L.load_file_list(path, TINY)
    return L.load_mistakes(path, 3, TINY)


@pytest.mark.parametrize(("kind", "content", "pattern"), MALFORMED)
def test_malformed_file_names_the_file_and_first_bad_entry(tmp_path, kind, content, pattern):
    path = write(tmp_path, f"{kind}.json", content)
    with pytest.raises(L.LabelFileError, match=pattern) as info:
        _load(kind, path)
    assert isinstance(info.value, VcheckError) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_missing_artefact(tmp_path):
    with pytest.raises(MissingArtefactError, match="does not exist"):
        L.load_real(tmp_path / "absent.json", 3, TINY)
    with pytest.raises(MissingArtefactError, match="does not exist"):
        L.load_file_list(tmp_path / "absent.txt", TINY)


def test_file_universe_pattern_must_use_index():
    with pytest.raises(ValueError, match="must use"):
        L.FileUniverse("same.png", 3)
    with pytest.raises(ValueError, match=r"one \{index\} field"):
        L.FileUniverse("img_{i}.png", 3)
    assert L.IMAGENET_VAL.name(0) == "ILSVRC2012_val_00000001.JPEG"
