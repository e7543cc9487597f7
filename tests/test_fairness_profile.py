"""The [fairness] table of a threshold profile: defaults, thresholds, per-attribute settings,
image-slice bins and named pairs, each validated with a message naming the key and file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vcheck.checks import Threshold
from vcheck.errors import InvalidArgument, UnknownNameError
from vcheck.evaluate.fairness import DEFAULT_MIN_GROUP_SIZE, FairnessProfile, PairSpec
from vcheck.evaluate.slices import DEFAULT_SLICES, SliceBins
from vcheck.models.zoo import FASHION_MNIST_CLASSES
from vcheck.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]


def load(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_profile(path, FASHION_MNIST_CLASSES).table("fairness")


def test_defaults_without_a_table(tmp_path):
    profile = load(tmp_path, "[accuracy]\n")
    assert profile == FairnessProfile()
    assert profile.min_group_size == DEFAULT_MIN_GROUP_SIZE
    assert profile.image_slices("fashion_mnist") == DEFAULT_SLICES["fashion_mnist"]
    assert load_profile(None, FASHION_MNIST_CLASSES).table("fairness") == FairnessProfile()


def test_full_table(tmp_path):
    profile = load(
        tmp_path,
        """
[fairness]
min_group_size = 50
min_class_samples = 5
accuracy_gap = { max = 0.1 }
spd = { max = 0.2 }
[fairness.attributes.region]
min_group_size = 10
accuracy_gap = { max = 0.2 }
[fairness.slices.lighting]
[fairness.slices.tone]
measure = "object_brightness"
edges = [100, 200]
[fairness.pairs.eu_minus_af]
attribute = "region"
groups = ["Europe", "Africa"]
gap = { max = -0.01 }
""",
    )
    assert profile.min_class_samples == 5
    assert profile.thresholds_for("lighting") == {
        "accuracy_gap": Threshold(0.1, "max"),
        "spd": Threshold(0.2, "max"),
    }
    assert profile.thresholds_for("region")["accuracy_gap"] == Threshold(0.2, "max")
    assert profile.min_group_size_for("region") == 10
    assert profile.min_group_size_for("lighting") == 50
    slices = profile.image_slices("imagenet")
    assert list(slices) == ["lighting", "tone"]
    assert slices["lighting"].edges == (85.0, 170.0)  # the domain's (Wake Vision) edges
    assert slices["tone"] == SliceBins(
        "object_brightness", (100.0, 200.0), ("<100", "100-200", ">=200")
    )
    assert profile.pairs == (
        PairSpec("eu_minus_af", "region", ("Europe", "Africa"), Threshold(-0.01, "max")),
    )


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ("[fairness]\nacuracy_gap = { max = 0.1 }\n", UnknownNameError, "'accuracy_gap'"),
        ("[fairness]\naccuracy_gap = { min = 0.1 }\n", InvalidArgument, "write { max = 0.1 }"),
        ("[fairness]\nworst_group_accuracy = { min = 0 }\n", InvalidArgument, "can never fail"),
        ("[fairness]\nmin_group_size = 0\n", InvalidArgument, "min_group_size=0"),
        ("[fairness]\nmin_class_samples = 1.5\n", InvalidArgument, "min_class_samples=1.5"),
        (
            "[fairness.attributes.region]\nmin_grup_size = 3\n",
            UnknownNameError,
            "'min_group_size'",
        ),
        ("[fairness.slices.glare]\n", InvalidArgument, "measure='glare'"),
        ("[fairness.slices.lighting]\nedges = [170, 85]\n", InvalidArgument, "increasing"),
        (
            '[fairness.slices.lighting]\nedges = [85]\nlabels = ["a", "b", "c"]\n',
            InvalidArgument,
            "expected 2 distinct names",
        ),
        ('[fairness.slices.lighting]\nlabels = ["a", "b"]\n', InvalidArgument, "with the edges"),
        ("[fairness.pairs.x]\ngroups = ['a', 'b']\n", InvalidArgument, "attribute=None"),
        ("[fairness.pairs.x]\nattribute = 'r'\ngroups = ['a', 'a']\n", InvalidArgument, "two"),
        (
            "[fairness.pairs.x]\nattribute = 'r'\ngroups = ['a', 'b']\ngap = { max = 1 }\n",
            InvalidArgument,
            "can never fail",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, text, error, needle):
    with pytest.raises(error) as info:
        load(tmp_path, text)
    assert needle in str(info.value)
    assert "p.toml" in str(info.value)


@pytest.mark.parametrize("model", ["fmnist_cnn", "fmnist_biased"])
def test_bundled_profiles_gate_fairness(model):
    path = REPO / "fixtures" / "profiles" / f"{model}.toml"
    raw = tomllib.loads(path.read_text())["fairness"]
    profile = load_profile(path, FASHION_MNIST_CLASSES).table("fairness")
    assert profile.thresholds and profile.min_group_size == raw["min_group_size"]
    assert profile.slices is None  # the documented Fashion-MNIST slices
    assert [p.attribute for p in profile.pairs] == ["object_brightness"]
