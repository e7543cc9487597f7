"""The ``[multilabel]`` profile table: label sets and slices read and validated when the
profile is parsed, so a malformed label file stops a run with exit 4 and one line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

# Loaded before any in-process run, so pytester's sys.modules cleanup never unloads them.
import vcheck.data.sources
import vcheck.evaluate.multilabel
import vcheck.models  # noqa: F401
from vcheck.checks import Threshold
from vcheck.data.label_sets import LabelFileError
from vcheck.errors import InvalidArgument, MissingArtefactError, UnknownNameError
from vcheck.evaluate.multilabel import MultiLabelProfile
from vcheck.models.zoo import FASHION_MNIST_CLASSES
from vcheck.profiles import load_profile

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
CLASSES = FASHION_MNIST_CLASSES
LABEL_SET = """
[multilabel.label_sets.mine]
format = "{fmt}"
path = "{path}"
file_names = "img_{{index}}.png"
num_files = 3
"""


def profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "profile.toml"
    path.write_text(body)
    return path


def label_file(tmp_path: Path, name: str, content: object) -> str:
    (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return name


def test_bundled_profile_declares_the_multi_object_label_sets():
    parsed = load_profile(REPO / "fixtures" / "profiles" / "fmnist_cnn.toml", CLASSES)
    ml = parsed.table("multilabel")
    assert set(ml.label_sets) == {"real", "shankar"}
    real = ml.label_sets["real"]
    assert real.format == "real" and real.eval_set == "fmnist_multi"
    assert len(real.entries) == 2000 and real.universe.name(0) == "fmnist_multi_00001.png"
    assert real.thresholds["top1"].direction == "min"
    hard = ml.slices["hard"]
    assert hard.label_set == "shankar" and len(hard.files) == len(hard.mistakes) > 0


def test_no_table_means_no_label_sets():
    assert load_profile(None, CLASSES).table("multilabel") == MultiLabelProfile()


def test_paths_are_relative_to_the_profile_and_thresholds_validated(tmp_path):
    name = label_file(tmp_path, "r.json", [[0], [], [1, 2]])
    body = LABEL_SET.format(fmt="real", path=name) + "top1 = { min = 0.5 }\nmap = { min = 0.4 }\n"
    body += "[multilabel]\nf1_threshold = 0.3\n"
    ml = load_profile(profile(tmp_path, body), CLASSES).table("multilabel")
    spec = ml.label_sets["mine"]
    assert spec.path == (tmp_path / "r.json").resolve()
    assert spec.entries == {"img_1.png": (0,), "img_2.png": (), "img_3.png": (1, 2)}
    assert spec.thresholds == {"top1": Threshold(0.5, "min"), "map": Threshold(0.4, "min")}
    assert spec.eval_set is None and ml.f1_threshold == 0.3


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ("top_1 = { min = 0.5 }", UnknownNameError, "Did you mean 'top1'"),
        ("hamming_loss = { min = 0.1 }", InvalidArgument, r"write \{ max = 0.1 \}"),
        ("forgiven_fraction = { min = 0.1 }", UnknownNameError, "forgiven_fraction"),
        ("top1 = { min = 0.0 }", InvalidArgument, "can never fail"),
        ("eval_set = 3", InvalidArgument, "eval_set=3"),
        ('eval_sets = "x"', UnknownNameError, "Unknown metric .eval_sets."),
    ],
)
def test_bad_label_set_keys(tmp_path, extra, error, message):
    name = label_file(tmp_path, "r.json", [[0], [], [1]])
    body = LABEL_SET.format(fmt="real", path=name) + extra + "\n"
    with pytest.raises(error, match=message):
        load_profile(profile(tmp_path, body), CLASSES)


def test_shankar_metrics_differ_from_real_ones(tmp_path):
    name = label_file(tmp_path, "s.json", {"img_1.png": {"correct": ["Bag"]}})
    body = LABEL_SET.format(fmt="shankar", path=name) + "top1_correct = { min = 0.5 }\n"
    spec = load_profile(profile(tmp_path, body), CLASSES).table("multilabel").label_sets["mine"]
    assert spec.entries["img_1.png"].correct == {8}
    with pytest.raises(UnknownNameError, match="'top1'"):
        load_profile(profile(tmp_path, body + "top1 = { min = 0.5 }\n"), CLASSES)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[multilabel.label_sets.x]\npath = "r.json"\n', r"format=None .*expected one of real"),
        ('[multilabel.label_sets.x]\nformat = "real"\n', "path = .* is missing"),
        ('[multilabel.label_sets.x]\nformat = "csv"\npath = "r.json"\n', "format='csv'"),
        ("[multilabel]\nf1_threshold = 0\n", r"f1_threshold=0 .*\(0, 1\]"),
        (
            '[multilabel.label_sets.x]\nformat = "real"\npath = "r.json"\nnum_files = 0\n',
            "num_files=0",
        ),
        ("[multilabel]\nlabel_set = 1\n", "Did you mean 'label_sets'"),
        (
            '[multilabel.label_sets.x]\nformat = "real"\npath = "r.json"\nfile_names = "a.png"\n',
            "must use",
        ),
        ('[multilabel.slices.m]\nlabel_set = "nope"\nfiles = "m.json"\n', "Unknown label set"),
    ],
)
def test_bad_tables(tmp_path, body, message):
    with pytest.raises((InvalidArgument, UnknownNameError), match=message):
        load_profile(profile(tmp_path, body), CLASSES)


def test_top5_is_refused_for_five_classes(tmp_path):
    name = label_file(tmp_path, "r.json", [[0], [1], [2]])
    body = LABEL_SET.format(fmt="real", path=name) + "top5 = { min = 0.9 }\n"
    with pytest.raises(UnknownNameError, match="top5"):
        load_profile(profile(tmp_path, body), CLASSES[:5])


def test_a_malformed_file_error_names_the_profile_table(tmp_path):
    name = label_file(tmp_path, "r.json", [[0], [12], [1]])
    body = LABEL_SET.format(fmt="real", path=name)
    with pytest.raises(LabelFileError) as info:
        load_profile(profile(tmp_path, body), CLASSES)
    text = str(info.value)
    assert "entry 1 (img_2.png) has class index 12, outside [0, 10)" in text
    assert f"named in [multilabel.label_sets.mine] of {tmp_path}" in text


def test_slices_are_checked_against_their_label_sets_files(tmp_path):
    real = label_file(tmp_path, "r.json", [[0], [], [1]])
    label_file(tmp_path, "m.json", ["img_3.png", "img_4.png"])
    body = LABEL_SET.format(fmt="real", path=real)
    body += '[multilabel.slices.m]\nlabel_set = "mine"\nfiles = "m.json"\n'
    with pytest.raises(LabelFileError, match=r"unknown file name 'img_4.png'.*slices.m\]"):
        load_profile(profile(tmp_path, body), CLASSES)
    with pytest.raises(MissingArtefactError, match=r"absent\.json does not exist"):
        load_profile(profile(tmp_path, body.replace('"m.json"', '"absent.json"')), CLASSES)


# -- through the plugin: exit 4, one line, before any test --------------------------------------


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("VCHECK_CACHE_DIR", raising=False)


MISTAKE = {"top_prediction": 1, "failure category": "Non-prototypical", "failure severity": "Major"}
PLUGIN_CASES = [
    pytest.param("real", "r.json", "[[0], [1]", "is not valid JSON (line 1", id="not-json"),
    pytest.param("real", "r.json", [[0], [1]], "expected 3 entries", id="wrong-length"),
    pytest.param("real", "r.json", [[0], [1], [10]], "class index 10", id="index-out-of-range"),
    pytest.param("real", "r.json", [[0], [1, 1], []], "lists class 1 twice", id="duplicate"),
    pytest.param(
        "shankar", "s.json", {"img_7.png": {"correct": [0]}}, "unknown file name", id="unknown-file"
    ),
    pytest.param(
        "shankar",
        "s.json",
        '{"img_1.png": {"correct": [0]}, "img_1.png": {"correct": [1]}}',
        "appears twice",
        id="duplicate-key",
    ),
    pytest.param("slice", "m.json", ["img_1.png", "img_1.png"], "listed twice", id="slice"),
    pytest.param("mistakes", "k.json", {"img_9.png": MISTAKE}, "img_9.png", id="mistakes"),
    pytest.param("real", "absent.json", None, "absent.json does not exist", id="missing"),
]


@pytest.mark.parametrize(("kind", "name", "content", "needle"), PLUGIN_CASES)
def test_malformed_label_file_stops_the_run_with_exit_4(
    pytester: pytest.Pytester, quiet, kind, name, content, needle
):
    root = pytester.path
    if content is not None:
        label_file(root, name, content)
    fmt = "shankar" if kind == "shankar" else "real"
    body = LABEL_SET.format(fmt=fmt, path=name if kind in ("real", "shankar") else "ok.json")
    label_file(root, "ok.json", [[0], [1], [2]])
    if kind == "mistakes":
        label_file(root, "m.json", ["img_1.png"])
    if kind in ("slice", "mistakes"):
        body += '[multilabel.slices.s]\nlabel_set = "mine"\nfiles = "m.json"\n'
        body += 'mistakes = "k.json"\n' if kind == "mistakes" else ""
    path = profile(root, body)
    result = pytester.runpytest_inprocess(SUITES, f"--profile={path}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("ERROR: vcheck: ") and needle in line
    assert re.search(r"named in \[multilabel\.(label_sets\.mine|slices\.s)\]", line)
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (root / "reports").exists()
