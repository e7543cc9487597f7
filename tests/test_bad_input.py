"""Bad input as a user types it: every mistake stops the run before any test with exit 4 and
one line that names the value, where it came from and the fix (issue 8's list, one test per
case). Runs that stop before anything is loaded run in-process; the others load the model and
data in a subprocess, as CI would."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
from _plugin_runs import ACCURACY, REPO, SUITES, assert_usage_error, run_to_usage_error

# Loaded before any in-process run, so pytester's sys.modules cleanup never unloads them.
import vcheck.data.sources
import vcheck.models
import vcheck.profiles  # noqa: F401

pytest_plugins = ["pytester"]

MODELS = REPO / "fixtures" / "models"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("VCHECK_CACHE_DIR", raising=False)


def usage_error(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    return run_to_usage_error(pytester, SUITES, f"--cache-dir={pytester.path / 'c'}", *args)


# -- 2. --weights that cannot apply ------------------------------------------------------------


@pytest.mark.parametrize(
    "model", [str(MODELS / "fmnist_cnn.pt"), "vcheck.models.zoo:fmnist_cnn_factory_missing"]
)
def test_weights_with_a_checkpoint_or_factory_model_is_refused(pytester, model):
    result = usage_error(pytester, f"--model={model}", f"--weights={MODELS / 'fmnist_mlp.pt'}")
    assert_usage_error(result, pytester, "--weights=", "cannot apply to --model=")


# -- 3. a --data-root that does not hold the data ----------------------------------------------


def test_a_data_root_that_does_not_exist_is_refused_not_replaced(pytester):
    result = usage_error(pytester, f"--data-root={pytester.path / 'fmnist-typo'}")
    assert_usage_error(result, pytester, "fmnist-typo does not exist", "drop --data-root")


def test_an_empty_data_root_is_refused_not_replaced(pytester):
    (pytester.path / "empty").mkdir()
    result = usage_error(pytester, f"--data-root={pytester.path / 'empty'}")
    assert_usage_error(result, pytester, "no Fashion-MNIST test files", "Fix --data-root")


def test_a_data_root_for_a_model_without_built_in_eval_sets_is_refused(pytester):
    pytester.makepyfile(
        toy_model="""
        from torch import nn
        from vcheck.models.base import ModelCfg

        def make():
            return nn.Linear(4, 2), ModelCfg("toy", ("a", "b"), (1, 2, 2))
        """
    )
    pytester.syspathinsert()
    (pytester.path / "data").mkdir()
    result = usage_error(pytester, "--model=toy_model:make", f"--data-root={pytester.path}/data")
    assert_usage_error(result, pytester, "does not apply to a model of domain 'toy'")


# -- 9. the cache location ---------------------------------------------------------------------


def test_a_cache_dir_that_is_a_file_is_refused(pytester):
    blocker = pytester.path / "cachefile"
    blocker.write_text("not a directory")
    result = run_to_usage_error(pytester, SUITES, f"--cache-dir={blocker}")
    assert_usage_error(result, pytester, "is a file, not a directory", "--no-cache")


# -- 10. damaged images in an ImageFolder ----------------------------------------------------------


def damaged_image_folder(root: Path) -> Path:
    """Fashion-MNIST-sized images in class-index folders, one empty and one garbage file."""
    import numpy as np
    from PIL import Image

    for label in ("0", "1"):
        for i in range(4):
            pixels = np.random.default_rng(10 * int(label) + i).integers(0, 256, (28, 28))
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / label / f"{i}.png")
    (root / "0" / "empty.png").write_bytes(b"")
    (root / "1" / "garbage.png").write_bytes(b"\x89PNG not really" * 20)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("strict", [False, True])
def test_damaged_images_are_skipped_and_counted_in_one_pass(pytester, strict):
    damaged_image_folder(pytester.path / "pics")
    pytester.makefile(".toml", vcheck='eval_sets = { pics = "pics" }\n')
    result = pytester.runpytest_subprocess(
        ACCURACY,
        "--vcheck-config=vcheck.toml",
        "-k",
        "pics",
        f"--cache-dir={pytester.path / 'c'}",
        "--metrics-json=m.json",
        *(["--strict"] if strict else []),
        "-p",
        "no:cacheprovider",
        timeout=600,
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "PIL" not in out
    assert "INTERNALERROR" not in out
    skipped = "vcheck: pics: skipped 2 of 10 images that could not be decoded (e.g. 0/empty.png)"
    assert sum(line.startswith(skipped) for line in out.splitlines()) == 1, out
    assert sum("on pics: 10/10 (100%)" in line for line in out.splitlines()) == 1  # one pass
    outcomes = result.parseoutcomes()
    if strict:  # every test that reads the predictions fails (at setup) with that line
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert outcomes.get("failed", 0) + outcomes.get("errors", 0) >= 8
        assert f"skipped under --strict: {skipped}" in out
    else:
        assert "errors" not in outcomes and "error" not in outcomes, out
        eval_sets = json.loads((pytester.path / "m.json").read_text())["eval_sets"]
        assert {e["name"]: e["n"] for e in eval_sets}["pics"] == 8


# -- 11. files of the wrong kind ----------------------------------------------------------------


def test_a_config_that_is_a_directory_or_not_utf8(pytester):
    result = usage_error(pytester, f"--vcheck-config={pytester.path}")
    assert_usage_error(result, pytester, "is a directory")
    latin1 = pytester.path / "latin1.toml"
    latin1.write_bytes(b'model = "caf\xe9"\n')
    result = usage_error(pytester, f"--vcheck-config={latin1}")
    assert_usage_error(result, pytester, "is not UTF-8 text")


def test_a_config_value_of_the_wrong_type_names_the_file(pytester):
    config = pytester.makefile(".toml", vcheck="model = 5\n")
    result = usage_error(pytester, f"--vcheck-config={config}")
    assert_usage_error(result, pytester, "model=5: expected a model name", f"(in {config})")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[accuracy]\nclass_priors = ["a", "b"]', "class_priors=['a', 'b']"),
        ("[accuracy]\nclass_priors = 0.1", "class_priors=0.1"),
        ("[accuracy]\nslices = 5", "slices=5"),
        ("[accuracy.slices.s]\nids = 5", "ids=5"),
        ("accuracy = 5", "accuracy=5"),
    ],
)
def test_profile_values_of_the_wrong_type(pytester, text, needle):
    profile = pytester.makefile(".toml", profile=text + "\n")
    result = usage_error(pytester, f"--profile={profile}")
    assert_usage_error(result, pytester, needle, str(profile))


def truncated_fmnist(folder: Path) -> Path:
    folder.mkdir()
    data = gzip.decompress((FMNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte").write_bytes(data[: len(data) // 3])
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (FMNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    return folder


@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist")
def test_truncated_fashion_mnist_under_data_root_is_one_line(pytester):
    root = truncated_fmnist(pytester.path / "fmnist")
    result = run_to_usage_error(pytester, ACCURACY, f"--data-root={root}")
    assert_usage_error(result, pytester, "t10k-images-idx3-ubyte is truncated", "copy the file")


# -- 12. thresholds that cannot fail or cannot pass --------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("top1 = { min = -0.5 }", "so this floor can never fail"),
        ("top1 = { min = 1.5 }", "so this floor can never pass"),
        ("ece = { max = -0.1 }", "so this ceiling can never pass"),
        ("top1 = { max = 0.5 }", "higher is better for top1"),
        ("ece = { max = inf }", "must be a finite number"),
        ("ece = { max = nan }", "must be a finite number"),
    ],
)
def test_thresholds_that_cannot_fail_or_pass_are_refused(pytester, line, needle):
    profile = pytester.makefile(".toml", profile=f"[accuracy]\n{line}\n")
    result = usage_error(pytester, f"--profile={profile}")
    assert_usage_error(result, pytester, needle)


def test_a_fractional_domain_budget_is_refused(pytester):
    profile = pytester.makefile(".toml", profile="[soundness]\nbab_max_domains = 0.5\n")
    result = usage_error(pytester, f"--profile={profile}")
    assert_usage_error(result, pytester, "bab_max_domains=0.5", "integer >= 1")


# -- 14. wording ---------------------------------------------------------------------------------


def test_a_text_file_as_weights_says_what_it_is(pytester):
    text = pytester.path / "notes.pt"
    text.write_text("these are not weights\n")
    result = pytester.runpytest_subprocess(
        ACCURACY, f"--weights={text}", f"--cache-dir={pytester.path / 'c'}", timeout=300
    )
    line = assert_usage_error(
        result, pytester, "not a file written by torch.save", "starts with b'these are no"
    )
    assert "101" not in line


def test_a_profile_passed_as_the_config_points_to_profile(pytester):
    profile = REPO / "fixtures" / "profiles" / "fmnist_cnn.toml"
    result = usage_error(pytester, f"--vcheck-config={profile}")
    assert_usage_error(result, pytester, "threshold-profile table", "--profile")


def test_a_bad_value_on_the_command_line_names_the_flag(pytester):
    result = usage_error(pytester, "--model= ")
    assert_usage_error(result, pytester, "(from --model)")
