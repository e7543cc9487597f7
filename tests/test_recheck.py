"""The benchmark re-check (the soundness suite's first gate) is cached by the benchmark's files
and vcheck's code: a warm run reads it, and any changed file computes it again."""

import shutil
from pathlib import Path

import pytest

from vcheck.soundness import recheck
from vcheck.soundness.runner import load_benchmarks

SHIPPED = Path(__file__).resolve().parents[1] / "fixtures" / "soundness"


@pytest.fixture
def bench_copy(tmp_path):
    shutil.copytree(SHIPPED / "mlp_4x64_eps0.02", tmp_path / "bench" / "mlp_4x64_eps0.02")
    (bench,) = load_benchmarks(tmp_path / "bench")
    return bench


def test_the_shipped_benchmark_passes_and_a_warm_run_reads_the_cache(bench_copy, tmp_path):
    cache = tmp_path / "cache"
    assert recheck.cached_benchmark_problems(bench_copy, cache) == {}
    assert len(list(cache.glob("*.json"))) == 1

    def recomputed(bench):
        raise AssertionError("recomputed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recheck, "benchmark_problems", recomputed)
        assert recheck.cached_benchmark_problems(bench_copy, cache) == {}
        # Any change to the benchmark's files is a new key: computed again.
        vnnlib = next((bench_copy.directory / "vnnlib").iterdir())
        vnnlib.write_text(vnnlib.read_text() + "\n; edited\n")
        with pytest.raises(AssertionError, match="recomputed"):
            recheck.cached_benchmark_problems(bench_copy, cache)


def test_a_damaged_cache_entry_is_recomputed(bench_copy, tmp_path):
    cache = tmp_path / "cache"
    recheck.cached_benchmark_problems(bench_copy, cache)
    (entry,) = cache.glob("*.json")
    entry.write_text('{"cex_0": 3}')
    assert recheck.cached_benchmark_problems(bench_copy, cache) == {}
    assert entry.read_text() == "{}"


def test_an_exposed_counterexample_is_reported(bench_copy):
    cex = next(i for i in bench_copy.network.instances if i.kind == "counterexample")
    cex.x_star[...] = cex.center  # the box's centre is classified correctly
    assert recheck.benchmark_problems(bench_copy)[cex.id] == "x* not misclassified in float32"
