"""Soundness-suite inputs as a user types them (issue 8, items 1 and 8): a mistyped
``--soundness-dir`` or a bad ``--verifier`` spec stops the run before any test with exit 4 and
one line naming the value, where it came from and the fix, instead of deselecting the suite
or failing 24 tests with tracebacks."""

from __future__ import annotations

import sys

import pytest
from _plugin_runs import REPO, SUITES, assert_usage_error, run_to_usage_error

import vcheck.soundness.runner  # noqa: F401  (loaded once, outside pytester's module cleanup)

pytest_plugins = ["pytester"]

SOUNDNESS = SUITES / "test_verifier_soundness.py"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


def usage_error(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return run_to_usage_error(pytester, SOUNDNESS, f"--cache-dir={pytester.path / 'c'}", *args)


# -- 1. --soundness-dir ------------------------------------------------------------------------


def test_a_mistyped_soundness_dir_is_refused_even_without_strict(pytester):
    typo = REPO / "fixtures" / "soundnes"
    result = usage_error(pytester, f"--soundness-dir={typo}")
    assert_usage_error(
        result, pytester, f"{typo} does not exist", "fixtures/soundness", "(from --soundness-dir)"
    )


def test_a_soundness_dir_without_benchmarks_is_refused(pytester):
    (pytester.path / "empty").mkdir()
    result = usage_error(pytester, f"--soundness-dir={pytester.path / 'empty'}")
    assert_usage_error(result, pytester, "holds no benchmark folder", "manifest.json")


def test_a_soundness_dir_in_a_config_file_names_the_file(pytester):
    config = pytester.makefile(".toml", vcheck='soundness_dir = "no/such/folder"\n')
    result = usage_error(pytester, f"--vcheck-config={config}")
    assert_usage_error(result, pytester, "no/such/folder does not exist", f"(in {config})")


# -- 8. --verifier specs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("bogus", ["verifier 'bogus'", "IBP, CROWN, alpha-CROWN, BaB", "cmd:<command"]),
        ("crown", ["verifier 'crown'", "did you mean 'CROWN'?"]),
        ("nosuchmodule:obj", ["cannot import 'obj' from 'nosuchmodule'"]),
        ("cmd:/nonexistent/v {onnx} {vnnlib} {result}", ["'/nonexistent/v': no such executable"]),
        ("cmd:/bin/true {onnx} {vnnlib}", ["has no {result} placeholder"]),
        ("os:getcwd", ["has no verify method"]),
    ],
    ids=["unknown", "lower-case", "no-module", "no-executable", "no-result", "no-verify"],
)
def test_a_bad_verifier_spec_stops_the_run_before_any_test(pytester, spec, needles):
    result = usage_error(pytester, f"--verifier={spec}")
    assert_usage_error(result, pytester, *needles, "(from --verifier)")


def test_the_spec_check_accepts_what_the_suite_can_run():
    from vcheck.soundness.runner import BUILTIN, check_verifier_spec

    for spec in (*BUILTIN, "cmd:/bin/true {onnx} {vnnlib} {timeout} {result}"):
        check_verifier_spec(spec)  # raises on a problem


# -- --soundness-instances ---------------------------------------------------------------------


def test_a_bad_instance_count_stops_the_run_with_one_line(pytester):
    result = usage_error(pytester, "--soundness-instances=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--soundness-instances: invalid positive integer or 'all' value: '0'" in (
        result.stderr.str()
    )
    for value, shown in (('"most"', "'most'"), ("0", "0")):
        config = pytester.makefile(".toml", vcheck=f"soundness_instances = {value}\n")
        result = usage_error(pytester, f"--vcheck-config={config}")
        assert_usage_error(
            result,
            pytester,
            f"soundness_instances={shown}",
            'a positive integer or "all"',
            str(config),
        )


def test_the_selection_keeps_the_first_instances_of_each_kind_and_their_files():
    from vcheck.soundness.recheck import _key
    from vcheck.soundness.runner import keep_instances, load_benchmark, select_instances

    full = load_benchmark(REPO / "fixtures" / "soundness" / "mlp_4x64_eps0.02")
    two = select_instances(full, 2)
    # The manifest's order (shuffled at generation): clean_00, clean_08, ..., cex_00, ..., cex_02
    assert [i.id for i in two.network.instances] == ["clean_00", "clean_08", "cex_00", "cex_02"]
    assert sorted(two.files) == sorted(i.id for i in two.network.instances)
    assert select_instances(full, 0) is full and select_instances(full, 10) is full
    assert len(full.network.instances) == 20  # the benchmark object itself is untouched
    # A background worker rebuilds the selection from its ids; the re-check is cached per
    # selection.
    again = keep_instances(load_benchmark(full.directory), ["cex_02", "clean_08"])
    assert [i.id for i in again.network.instances] == ["clean_08", "cex_02"]
    assert _key(two) != _key(full)
