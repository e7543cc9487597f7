"""vcheck.profiles: threshold profiles from TOML, validated against metrics and classes."""

import hashlib
import tomllib
from pathlib import Path

import pytest

from vcheck.checks import Threshold
from vcheck.errors import InvalidArgument, UnknownNameError
from vcheck.models.zoo import FASHION_MNIST_CLASSES
from vcheck.profiles import ACCURACY_METRICS, load_profile, parse_threshold

REPO = Path(__file__).resolve().parents[1]
CLASSES = FASHION_MNIST_CLASSES


def profile_file(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_the_bundled_fmnist_profile():
    path = REPO / "fixtures" / "profiles" / "fmnist_cnn.toml"
    profile = load_profile(path, CLASSES)
    raw = tomllib.loads(path.read_text())["accuracy"]
    expected = {
        k: Threshold(float(v[d]), d) for k, v in raw.items() if k in ACCURACY_METRICS for d in v
    }
    assert expected  # the profile gates something
    assert profile.accuracy.thresholds == expected
    assert profile.path == path.resolve()
    assert profile.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {s.name for s in profile.accuracy.slices} == set(raw.get("slices", {}))
    for spec in profile.accuracy.slices:
        assert set(spec.classes or ()) <= set(CLASSES)
    assert profile.describe() == {"path": str(path.resolve()), "sha256": profile.sha256}


def test_no_profile_is_empty():
    profile = load_profile(None, CLASSES)
    assert profile.accuracy.thresholds == {} and profile.accuracy.slices == ()
    assert profile.describe() == {"path": None, "sha256": None}


def test_missing_profile_file(tmp_path):
    with pytest.raises(InvalidArgument, match=r"does not exist.*--profile"):
        load_profile(tmp_path / "nope.toml", CLASSES)


def test_invalid_toml(tmp_path):
    path = profile_file(tmp_path, "[accuracy\ntop1 = 1\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        load_profile(path, CLASSES)


def test_unknown_metric_suggests_the_close_one(tmp_path):
    path = profile_file(tmp_path, "[accuracy]\ntop_1 = { min = 0.9 }\n")
    with pytest.raises(UnknownNameError) as info:
        load_profile(path, CLASSES)
    assert "Unknown metric 'top_1'" in str(info.value)
    assert "Did you mean 'top1'" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "0.9",
        "{ min = 0.9, max = 1.0 }",
        "{ at_least = 0.9 }",
        '{ min = "0.9" }',
        "{ min = true }",
        "{}",
        "[0.9]",
    ],
)
def test_bad_threshold_shape(tmp_path, value):
    path = profile_file(tmp_path, f"[accuracy]\ntop1 = {value}\n")
    with pytest.raises(InvalidArgument, match=r"top1=.*expected \{ min = NUMBER \}"):
        load_profile(path, CLASSES)


def test_parse_threshold_accepts_ints_and_both_directions():
    assert parse_threshold("x", {"min": 1}) == Threshold(1.0, "min")
    assert parse_threshold("x", {"max": 0.05}) == Threshold(0.05, "max")


def test_slice_by_ids(tmp_path):
    path = profile_file(
        tmp_path,
        '[accuracy.slices.hard]\nids = ["test-00001", "test-00042", 7]\ntop1 = { min = 0.5 }\n',
    )
    (spec,) = load_profile(path, CLASSES).accuracy.slices
    assert spec.name == "hard"
    assert spec.ids == frozenset({"test-00001", "test-00042", "7"})
    assert spec.classes is None
    assert spec.thresholds == {"top1": Threshold(0.5, "min")}


def test_slice_ids_file_is_relative_to_the_profile_and_ignores_comments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the profile's folder
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "slices").mkdir()
    (folder / "slices" / "hard.txt").write_text(
        "# hand-picked hard samples\ntest-00001\n\n  test-00002  # blurry\n#test-00003\n"
    )
    path = profile_file(
        folder, '[accuracy.slices.hard]\nids_file = "slices/hard.txt"\ntop1 = { min = 0.5 }\n'
    )
    (spec,) = load_profile(path, CLASSES).accuracy.slices
    assert spec.ids == frozenset({"test-00001", "test-00002"})


def test_slice_ids_file_missing(tmp_path):
    path = profile_file(tmp_path, '[accuracy.slices.hard]\nids_file = "nope.txt"\n')
    with pytest.raises(InvalidArgument, match=r"\[accuracy.slices.hard\].*nope.txt"):
        load_profile(path, CLASSES)


@pytest.mark.parametrize("ids", ["ids = []", 'ids_file = "empty.txt"'])
def test_slice_with_no_ids_is_an_error(tmp_path, ids):
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    path = profile_file(tmp_path, f"[accuracy.slices.hard]\n{ids}\n")
    with pytest.raises(InvalidArgument, match="names no sample ids"):
        load_profile(path, CLASSES)


def test_slice_by_classes(tmp_path):
    path = profile_file(
        tmp_path,
        '[accuracy.slices.footwear]\nclasses = ["Sandal", "Sneaker"]\nece = { max = 0.1 }\n',
    )
    (spec,) = load_profile(path, CLASSES).accuracy.slices
    assert spec.classes == ("Sandal", "Sneaker")
    assert spec.ids is None
    assert spec.thresholds == {"ece": Threshold(0.1, "max")}


def test_slice_with_unknown_class_suggests(tmp_path):
    path = profile_file(tmp_path, '[accuracy.slices.feet]\nclasses = ["Sneakers"]\n')
    with pytest.raises(UnknownNameError, match=r"Unknown class 'Sneakers'.*Did you mean 'Sneaker'"):
        load_profile(path, CLASSES)


def test_slice_metric_outside_the_slice_metrics(tmp_path):
    path = profile_file(
        tmp_path, '[accuracy.slices.f]\nclasses = ["Bag"]\nauc_ovr_macro = { min = 0.9 }\n'
    )
    with pytest.raises(UnknownNameError, match="'auc_ovr_macro'"):
        load_profile(path, CLASSES)


@pytest.mark.parametrize(
    "body",
    [
        "top1 = { min = 0.9 }",  # none
        'ids = ["a"]\nclasses = ["Bag"]',  # two
        'ids = ["a"]\nids_file = "x.txt"\nclasses = ["Bag"]',  # three
    ],
)
def test_slice_needs_exactly_one_selector(tmp_path, body):
    path = profile_file(tmp_path, f"[accuracy.slices.s]\n{body}\n")
    with pytest.raises(InvalidArgument, match="exactly one of ids, ids_file, classes"):
        load_profile(path, CLASSES)


def test_class_priors_are_normalised(tmp_path):
    priors = [2] * 5 + [6] * 5  # sum 40
    path = profile_file(
        tmp_path,
        f"[accuracy]\nclass_priors = {priors}\ntop1_prior_corrected = {{ min = 0.8 }}\n",
    )
    acc = load_profile(path, CLASSES).accuracy
    assert acc.class_priors == pytest.approx([0.05] * 5 + [0.15] * 5)
    assert sum(acc.class_priors) == pytest.approx(1.0)
    assert acc.thresholds == {"top1_prior_corrected": Threshold(0.8, "min")}
    assert "class_priors" not in acc.thresholds


@pytest.mark.parametrize(
    "priors", [[0.1, 0.9], [0.1] * 11, [0.0] + [0.1] * 9, [-0.1] * 10], ids=str
)
def test_class_priors_must_be_one_positive_number_per_class(tmp_path, priors):
    path = profile_file(tmp_path, f"[accuracy]\nclass_priors = {priors}\n")
    with pytest.raises(InvalidArgument, match="expected 10 positive numbers"):
        load_profile(path, CLASSES)


def test_prior_corrected_top1_without_priors_is_an_error(tmp_path):
    path = profile_file(tmp_path, "[accuracy]\ntop1_prior_corrected = { min = 0.8 }\n")
    with pytest.raises(InvalidArgument, match="needs class_priors"):
        load_profile(path, CLASSES)


def test_unknown_top_level_table(tmp_path):
    path = profile_file(tmp_path, "[accuracy]\ntop1 = { min = 0.9 }\n[acuracy]\n")
    with pytest.raises(UnknownNameError, match=r"'acuracy'.*Did you mean 'accuracy'"):
        load_profile(path, CLASSES)


def test_soundness_table_is_validated_and_has_defaults(tmp_path):
    from vcheck.errors import InvalidArgument, UnknownNameError
    from vcheck.profiles import load_profile

    classes = ("a", "b")
    good = tmp_path / "good.toml"
    good.write_text("[soundness]\ntimeout = 5\nmodel_eps = 0.01\n")
    s = load_profile(good, classes).soundness
    assert (s.timeout, s.model_eps, s.bab_max_domains, s.model_samples) == (5.0, 0.01, 50, 100)
    typo = tmp_path / "typo.toml"
    typo.write_text("[soundness]\nmodel_epsilon = 0.01\n")
    with pytest.raises(UnknownNameError, match="Did you mean 'model_eps'"):
        load_profile(typo, classes)
    bad = tmp_path / "bad.toml"
    bad.write_text("[soundness]\ntimeout = -1\n")
    with pytest.raises(InvalidArgument, match="timeout=-1"):
        load_profile(bad, classes)
    assert (s.control_model, s.control_min_certified) == ("fmnist_mlp", 0.6)
    control = tmp_path / "control.toml"
    control.write_text('[soundness]\ncontrol_model = "fmnist_mpl"\n')
    with pytest.raises(UnknownNameError, match=r"control_model 'fmnist_mpl'.*'fmnist_mlp'"):
        load_profile(control, classes)
    control.write_text('[soundness]\ncontrol_model = ""\ncontrol_min_certified = 0.9\n')
    s = load_profile(control, classes).soundness
    assert (s.control_model, s.control_min_certified) == ("", 0.9)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("top1 = { min = -0.5 }", r"top1=.*lies in \[0, 1\], so this floor can never fail"),
        ("top1 = { min = 0 }", "can never fail"),
        ("top1 = { min = 1.5 }", "can never pass"),
        ("ece = { max = -0.1 }", "can never pass"),
        ("ece = { max = 1 }", "can never fail"),
        ("top1 = { max = 0.5 }", r"higher is better for top1.*write \{ min = 0.5 \}"),
        ("ece = { min = 0.01 }", r"lower is better for ece.*write \{ max = 0.01 \}"),
        ("ece = { max = inf }", "must be a finite number"),
        ("ece = { max = nan }", "must be a finite number"),
        ("nll = { max = inf }", "must be a finite number"),
    ],
)
def test_thresholds_that_cannot_fail_pass_or_point_the_wrong_way_are_refused(
    tmp_path, line, message
):
    path = profile_file(tmp_path, f"[accuracy]\n{line}\n")
    with pytest.raises(InvalidArgument, match=message):
        load_profile(path, CLASSES)


def test_unbounded_metrics_take_any_finite_ceiling(tmp_path):
    path = profile_file(tmp_path, "[accuracy]\nnll = { max = 12.5 }\ntop1 = { min = 1 }\n")
    assert load_profile(path, CLASSES).accuracy.thresholds == {
        "nll": Threshold(12.5, "max"),
        "top1": Threshold(1.0, "min"),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy = 5", r"accuracy=5 in .*expected a table"),
        ("[accuracy]\nclass_priors = 0.1", "class_priors=0.1 .*expected 10 positive numbers"),
        ('[accuracy]\nclass_priors = ["a"]', "expected 10 positive numbers"),
        ("[accuracy]\nslices = 5", r"slices=5 in .*expected a table"),
        ("[accuracy.slices]\nhard = 5", r"accuracy.slices.hard=5 .*expected a table"),
        ("[accuracy.slices.hard]\nids = 5", r"ids=5 in .*expected a list of sample ids"),
        ("[accuracy.slices.hard]\nclasses = 5", r"classes=5 in .*list of strings"),
        ("[accuracy.slices.hard]\nids_file = 5", r"ids_file=5 in .*expected a path"),
        ("[soundness]\nbab_max_domains = 0.5", r"bab_max_domains=0.5 .*integer >= 1"),
        ("[soundness]\nmodel_eps = 2", r"model_eps=2 .*number in \(0, 1\]"),
        ("[soundness]\ntimeout = inf", r"timeout=inf .*positive number"),
    ],
)
def test_values_of_the_wrong_type_are_one_line_errors(tmp_path, text, message):
    path = profile_file(tmp_path, text + "\n")
    with pytest.raises(InvalidArgument, match=message):
        load_profile(path, CLASSES)


def test_a_profile_that_is_a_directory_or_not_utf8(tmp_path):
    with pytest.raises(InvalidArgument, match="is a directory"):
        load_profile(tmp_path, CLASSES)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n[accuracy]\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        load_profile(path, CLASSES)


def test_every_suite_table_has_defaults_without_a_profile():
    from vcheck.profiles import SUITE_TABLES

    profile = load_profile(None, CLASSES)
    assert set(profile.tables) == set(SUITE_TABLES)
    assert profile.table("soundness").timeout == 30.0
