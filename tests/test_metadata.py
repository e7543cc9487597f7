"""Metadata tables: the ``metadata`` setting, validation errors naming file and column or id,
matching rows to samples by id or file name, attaching attributes to an eval set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vcheck.config import build_config, read_toml_settings
from vcheck.data.evalset import TensorEvalSet
from vcheck.data.metadata import (
    MetadataSpec,
    attach_metadata,
    attributes_of,
    bin_labels,
    check_metadata,
    match_rows,
    parse_metadata_setting,
    read_metadata,
)
from vcheck.errors import InvalidArgument, MissingArtefactError, UnknownNameError, VcheckError


def table(tmp_path: Path, text: str, name: str = "meta.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec(path: Path, **kw) -> MetadataSpec:
    return MetadataSpec(path, **kw)


def eval_set(ids: list[str]) -> TensorEvalSet:
    n = len(ids)
    return TensorEvalSet(
        name="toy",
        ids=ids,
        labels=torch.arange(n) % 2,
        classes=("a", "b"),
        fingerprint="f",
        source="toy",
        pixels=torch.zeros(n, 1, 4, 4, dtype=torch.uint8),
    )


# -- the setting -------------------------------------------------------------------------------


def test_setting_short_and_full_forms_resolve_paths_relative_to_the_file(tmp_path):
    config = tmp_path / "vcheck.toml"
    config.write_text(
        "[metadata]\n"
        'a = "meta/a.csv"\n'
        "[metadata.b]\n"
        'path = "b.parquet"\nkey = "file_name"\nattributes = ["region", "age"]\n'
        "bins = { age = [18, 65], score = 4 }\n"
    )
    settings = build_config({}, config)
    a, b = settings.metadata["a"], settings.metadata["b"]
    assert a == MetadataSpec((tmp_path / "meta" / "a.csv").resolve())
    assert b.path == (tmp_path / "b.parquet").resolve() and b.key == "file_name"
    assert b.attributes == ("region", "age")
    assert dict(b.bins) == {"age": (18.0, 65.0), "score": 4}
    assert "key=file_name" in settings.as_dict()["metadata"]["b"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("meta.csv", "expected a table of eval-set name"),
        ({"s": 3}, "metadata.s=3"),
        ({"s": {"path": "m.csv", "colour": 1}}, "metadata.s.colour: unknown key"),
        ({"s": {"path": "m.csv", "bins": {"age": [65, 18]}}}, "metadata.s.bins.age"),
        ({"s": {"path": "m.csv", "bins": {"age": 1}}}, "at least 2 quantile bins"),
        ({"s": {"path": "m.csv", "attributes": "region"}}, "metadata.s.attributes"),
    ],
)
def test_bad_setting_is_a_usage_error(tmp_path, value, needle):
    with pytest.raises(InvalidArgument, match=needle):
        parse_metadata_setting(value, tmp_path)


def test_setting_in_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.vcheck]\nmetadata = { fmnist_test = "m.csv" }\n')
    assert read_toml_settings(pyproject, "tool.vcheck")["metadata"]["fmnist_test"].path == (
        tmp_path / "m.csv"
    )


# -- reading and validating ------------------------------------------------------------------


def test_reads_categorical_integer_boolean_and_binned_columns(tmp_path):
    path = table(
        tmp_path,
        "id,region,camera,indoor,age\n"
        "s0,Europe,1,true,12\ns1,Africa,2,false,30\ns2,NA,1,true,70\ns3,Europe,2,false,40\n",
    )
    meta = read_metadata(spec(path, bins=(("age", (18.0, 65.0)),)))
    assert meta.key_column == "id" and meta.keys == ("s0", "s1", "s2", "s3")
    assert meta.attributes == ("region", "camera", "indoor", "age")
    assert meta.groups["region"].tolist() == ["Europe", "Africa", "NA", "Europe"]  # NA kept
    assert meta.orders["region"] == ("Africa", "Europe", "NA")
    assert meta.groups["camera"].tolist() == ["1", "2", "1", "2"]
    assert meta.groups["indoor"].tolist() == ["True", "False", "True", "False"]
    assert meta.groups["age"].tolist() == ["<18", "18-65", ">=65", "18-65"]
    assert meta.orders["age"] == ("<18", "18-65", ">=65")


def test_quantile_bins(tmp_path):
    rows = "\n".join(f"s{i},{i}" for i in range(100))
    path = table(tmp_path, f"id,score\n{rows}\n")
    meta = read_metadata(spec(path, bins=(("score", 4),)))
    assert len(meta.orders["score"]) == 4
    assert meta.groups["score"].value_counts().tolist() == [25, 25, 25, 25]


def test_tsv_and_explicit_key_and_attributes(tmp_path):
    path = table(tmp_path, "file\tregion\tnote\na.jpg\tX\tfoo\nb.jpg\tY\tbar\n", "m.tsv")
    meta = read_metadata(spec(path, key="file", attributes=("region",)))
    assert meta.keys == ("a.jpg", "b.jpg") and meta.attributes == ("region",)


def test_parquet_needs_an_engine_or_reads(tmp_path):
    frame = pd.DataFrame({"id": ["s0", "s1"], "region": ["X", "Y"]})
    path = tmp_path / "m.parquet"
    try:
        frame.to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1")  # no engine installed: reading must say what to install
        with pytest.raises(InvalidArgument, match=r"m\.parquet.*pip install pyarrow"):
            read_metadata(spec(path))
        return
    assert read_metadata(spec(path)).groups["region"].tolist() == ["X", "Y"]


@pytest.mark.parametrize(
    ("text", "kw", "needle"),
    [
        ("region\nX\n", {}, "has no key column named id, sample_id"),
        ("id,region\ns0,X\n", {"key": "file"}, "has no key column 'file'"),
        ("id,region\ns0,X\ns1,Y\ns0,Y\n", {}, "duplicate id 's0' in 'id' (rows 2, 4)"),
        ("id,region\ns0,X\n,Y\n", {}, "key column 'id' is empty in row 3"),
        ("id,region\ns0,X\ns1,\n", {}, "column 'region' is empty for id 's1' (row 3)"),
        ("id,age\ns0,1.5\ns1,2.5\n", {}, "column 'age' is numeric with 2 distinct values"),
        (
            "id,age\n" + "".join(f"s{i},{i}\n" for i in range(30)),
            {},
            "column 'age' is numeric with 30 distinct values",
        ),
        ("id,age\ns0,1\ns1,2\n", {"bins": (("age", (5.0, 10.0)),)}, "bin '5-10' of column 'age'"),
        ("id,region\ns0,X\n", {"bins": (("region", (1.0,)),)}, "'region', which is not numeric"),
        ("id,region\ns0,X\n", {"attributes": ("regoin",)}, "has no column 'regoin'"),
        ("id\ns0\n", {}, "no attribute column besides the key 'id'"),
        ("id,label\ns0,3\n", {}, "'label' clashes with a built-in name"),
        ("id,lighting\ns0,dark\n", {}, "'lighting' clashes with a built-in name"),
        (
            "id,caption\n" + "".join(f"s{i},text {i}\n" for i in range(40)),
            {},
            "'caption' has 40 distinct values in 40 rows",
        ),
        ("id,region\n", {}, "has no rows"),
    ],
)
def test_validation_errors_name_the_file_and_column_or_id(tmp_path, text, kw, needle):
    path = table(tmp_path, text)
    with pytest.raises(VcheckError) as info:
        read_metadata(spec(path, **kw))
    message = str(info.value)
    assert needle in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(MissingArtefactError, match=r"nope\.csv does not exist"):
        read_metadata(spec(tmp_path / "nope.csv"))
    with pytest.raises(InvalidArgument, match=r"unknown format '\.xlsx'"):
        read_metadata(spec(table(tmp_path, "x", "m.xlsx")))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'id,region\n"s0,X\n')
    with pytest.raises(VcheckError, match=r"cannot read metadata table .*bad\.csv"):
        read_metadata(spec(bad))


def test_a_changed_file_is_read_again(tmp_path):
    path = table(tmp_path, "id,region\ns0,X\n")
    assert read_metadata(spec(path)).groups["region"].tolist() == ["X"]
    path.write_text("id,region\ns0,Y\ns1,Z\n")
    assert read_metadata(spec(path)).groups["region"].tolist() == ["Y", "Z"]


# -- matching rows to samples -----------------------------------------------------------------


def test_match_by_id_then_by_file_name():
    ids = ["n01/ILSVRC2012_val_00000001.JPEG", "n02/ILSVRC2012_val_00000002.JPEG", "x"]
    keys = ["x", "ILSVRC2012_val_00000002.png", "val/n01/ILSVRC2012_val_00000001.JPEG"]
    assert match_rows(ids, keys, source="t").tolist() == [2, 1, 0]
    assert match_rows(["a.jpg", "b.jpg"], ["a.jpg"], source="t").tolist() == [0, -1]


def test_match_rejects_ambiguity():
    with pytest.raises(InvalidArgument, match=r"row 'art_0.jpg' fits the samples"):
        match_rows(["n1/art_0.jpg", "n2/art_0.jpg"], ["art_0.jpg"], source="t")
    with pytest.raises(InvalidArgument, match=r"rows 'a.png', 'a.jpg' all name the sample"):
        match_rows(["a.JPEG"], ["a.png", "a.jpg"], source="t")
    # folders disambiguate
    assert (
        match_rows(["n1/art_0.jpg", "n2/art_0.jpg"], ["n2/art_0", "n1/art_0"], source="t")[0] == 1
    )


def test_attach_aligns_rows_to_samples_and_feeds_eval_set_metadata(tmp_path):
    path = table(tmp_path, "id,region\nextra,Z\ns2,X\ns0,Y\ns1,X\n")
    es = attach_metadata(eval_set(["s0", "s1", "s2"]), spec(path))
    frame = attributes_of(es)
    assert frame.index.tolist() == ["s0", "s1", "s2"]
    assert frame["region"].tolist() == ["Y", "X", "X"]
    assert list(frame["region"].cat.categories) == ["X", "Y", "Z"]  # the table's groups
    assert es.metadata["region"].tolist() == ["Y", "X", "X"]
    assert es.metadata.columns.tolist() == ["id", "label", "class_name", "region"]
    sub = es.subset([2, 0])  # a subset keeps its attributes, aligned by id
    assert sub.metadata["region"].tolist() == ["X", "Y"]


def test_attach_reports_samples_without_a_row(tmp_path):
    path = table(tmp_path, "id,region\ns0,X\n")
    with pytest.raises(InvalidArgument) as info:
        attach_metadata(eval_set(["s0", "s1", "s2", "s3", "s4"]), spec(path))
    message = str(info.value)
    assert str(path) in message
    assert "no row for 4 of the 5 samples of toy (e.g. 's1', 's2', 's3')" in message


def test_check_metadata_names_an_unknown_eval_set(tmp_path):
    path = table(tmp_path, "id,region\ns0,X\n")
    settings = build_config({}).__class__(metadata={"fmnist_tset": spec(path)})
    with pytest.raises(UnknownNameError, match=r"'fmnist_tset'. Did you mean 'fmnist_test'"):
        check_metadata(settings, ["fmnist_test"])
    check_metadata(settings.__class__(metadata={"fmnist_test": spec(path)}), ["fmnist_test"])


def test_bin_labels():
    assert bin_labels([0.1, 0.6]) == ("<0.1", "0.1-0.6", ">=0.6")
    assert np.array_equal(np.array(bin_labels([5])), np.array(["<5", ">=5"]))
