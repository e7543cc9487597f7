"""alpha-CROWN and branch and bound in background processes give the verdicts the in-process
path gives, fill the same cache (so a warm run starts no process), and stop when the run ends."""

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from vcheck.soundness.pool import start_pool
from vcheck.soundness.runner import (
    load_benchmark,
    resolve_verifier,
    run_verifier,
    select_instances,
)

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "fixtures" / "soundness"
SMALL = "graded_mlp_25in_64x32_eps0.02"  # 6 instances, seconds for both verifiers
LARGE = "cnn_2conv_3x5x5_eps0.02"  # about a minute of alpha-CROWN


def _pool(pairs, cache_dir, workers=2, lines=None):
    return start_pool(
        pairs,
        timeout=60.0,
        bab_max_domains=50,
        cache_dir=cache_dir,
        workers=workers,
        write=(lines if lines is not None else []).append,
    )


def _answers(results):
    return {k: (r.verdict, r.refused) for k, r in results.items()}


@pytest.mark.trains  # alpha-CROWN optimises
def test_background_verdicts_equal_in_process_ones_and_fill_the_cache(tmp_path):
    bench = load_benchmark(SHIPPED / SMALL)
    specs = ("alpha-CROWN", "BaB")
    here = {
        s: _answers(run_verifier(resolve_verifier(s, timeout=60.0, bab_max_domains=50), bench))
        for s in specs
    }
    lines = []
    pool = _pool([(s, bench) for s in specs], tmp_path, lines=lines)
    try:
        assert pool is not None and pool.workers == 2
        background = {s: _answers(pool.verdicts(s, SMALL)) for s in specs}
    finally:
        pool.close()
    assert background == here
    assert "in 2 background processes" in lines[0]
    assert any(f"alpha-CROWN on {SMALL}: 6 instances in" in line for line in lines)
    # Warm: every pair is cached, so no process starts.
    assert _pool([(s, bench) for s in specs], tmp_path) is None


def test_cheap_verifiers_and_zero_workers_start_no_process(tmp_path):
    bench = load_benchmark(SHIPPED / SMALL)
    assert _pool([("IBP", bench), ("CROWN", bench)], tmp_path) is None
    assert _pool([("alpha-CROWN", bench)], tmp_path, workers=0) is None


def test_a_worker_verifies_only_the_runs_selection_of_instances(tmp_path):
    bench = select_instances(load_benchmark(SHIPPED / "mlp_4x64_eps0.02"), 1)
    pool = _pool([("BaB", bench)], tmp_path, workers=1)
    try:
        verdicts = pool.verdicts("BaB", bench.name)
    finally:
        pool.close()
    selected = sorted(i.id for i in bench.network.instances)
    assert sorted(verdicts) == selected == ["cex_00", "clean_00"]


def test_closing_the_pool_stops_its_workers_at_once(tmp_path):
    pool = _pool([("alpha-CROWN", load_benchmark(SHIPPED / LARGE))], tmp_path, workers=1)
    try:
        time.sleep(1.0)  # the worker is starting or verifying
    finally:
        pool.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []
    assert not list(tmp_path.glob("*.json"))  # nothing half-written in the verdict cache


def _suite(pytester, cache: Path, *args):
    return pytester.runpytest_subprocess(
        REPO / "suites" / "test_verifier_soundness.py",
        "-p",
        "no:cacheprovider",
        f"--cache-dir={cache}",
        "--verifier=alpha-CROWN",
        "--verifier=BaB",
        "-k",
        SMALL,
        *args,
        timeout=600,
    )


@pytest.mark.slow
def test_the_suite_reports_the_same_with_and_without_background_workers(pytester, tmp_path):
    metrics = Path("reports") / "fmnist_cnn.metrics.json"

    def checks():
        doc = json.loads((pytester.path / metrics).read_text())
        return {(c["metric"], c["eval_set"]): (c["value"], c["outcome"]) for c in doc["checks"]}

    pooled = _suite(pytester, tmp_path / "a")
    assert pooled.ret == 0, pooled.stdout.str()
    pooled.stdout.fnmatch_lines(["*verifying 2 (verifier, network) pairs in * background*"])
    pooled_checks = checks()
    pytester.makefile(".toml", inline="verifier_workers = 0\n")
    inline = _suite(pytester, tmp_path / "b", "--vcheck-config=inline.toml")
    assert inline.ret == 0, inline.stdout.str()
    assert "background" not in inline.stdout.str()
    assert checks() == pooled_checks
    warm = _suite(pytester, tmp_path / "a")
    assert warm.ret == 0 and "background" not in warm.stdout.str()
    assert checks() == pooled_checks
