"""Verifier soundness (specs/soundness.md) on the shipped hidden-counterexample benchmark.

A verifier that answers "unsat" (verified robust) on an instance with a planted, genuine
counterexample is unsound; so is one whose "sat" comes with a point that is not a
counterexample. The benchmark itself is re-checked first: every x* inside its box, truly
misclassified (float32, float64, ONNX Runtime), and missed by a fresh attack.

Verifiers: ``--verifier`` (repeatable), default IBP, CROWN, alpha-CROWN and branch and bound;
their per-instance timeout and BaB's domain budget come from the profile's [soundness] table.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vcheck.checks import Measurement, Threshold
from vcheck.models.zoo import fixtures_dir
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.soundness.attacks import margin, pgd
from vcheck.soundness.runner import BUILTIN, load_benchmarks, resolve_verifier, run_verifier

SUITE = "soundness"
NONE_ALLOWED = Threshold(0.0, "max")
LIRPA_METHODS = ("IBP", "CROWN", "alpha-CROWN")
FLOAT_NOISE_FACTOR = 8  # an x*'s depth must exceed its float32 rounding this many times


def _root(session):
    return session.settings.soundness_dir or fixtures_dir() / "soundness"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    if "verifier_spec" in metafunc.fixturenames:
        metafunc.parametrize("verifier_spec", list(session.settings.verifiers) or list(BUILTIN))
    if "bound_method" in metafunc.fixturenames:
        specs = list(session.settings.verifiers) or list(BUILTIN)
        methods = [m for m in LIRPA_METHODS if m in specs]
        metafunc.parametrize("bound_method", methods or [NOTHING_TO_CHECK])
    if "benchmark_name" in metafunc.fixturenames:
        root = _root(session)
        names = (
            sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())
            if (root.is_dir())
            else []
        )
        metafunc.parametrize("benchmark_name", names or [NOTHING_TO_CHECK])


@pytest.fixture
def soundness_benchmark(benchmark_name, vcheck_session):
    benchmarks = vcheck_session.memo(
        ("soundness", "benchmarks"),
        lambda: {b.name: b for b in load_benchmarks(_root(vcheck_session))},
    )
    return benchmarks[benchmark_name]


@pytest.fixture
def verdicts(verifier_spec, soundness_benchmark, vcheck_session, request):
    if verifier_spec in BUILTIN:
        try:
            from vcheck.verify._lirpa_compat import import_auto_lirpa

            import_auto_lirpa()
        except ImportError as exc:
            pytest.skip(f"built-in verifiers need auto_LiRPA: {exc}")
    budget = vcheck_session.profile.soundness
    verifier = resolve_verifier(
        verifier_spec, timeout=budget.timeout, bab_max_domains=budget.bab_max_domains
    )

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    interactive = bool(reporter is not None and reporter.isatty)

    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny networks: one thread is faster and deterministic
        try:
            cache = (
                None
                if vcheck_session.settings.no_cache
                else (vcheck_session.settings.cache_dir / "verdicts")
            )
            return run_verifier(
                verifier,
                soundness_benchmark,
                cache,
                write=vcheck_session.write_line,
                label=verifier_spec,
                interval=2.0 if interactive else 30.0,  # a CI log gets a few lines
            )
        finally:
            torch.set_num_threads(threads)

    return vcheck_session.memo(("soundness", verifier_spec, soundness_benchmark.name), run)


def _instances(benchmark, kind):
    return [i for i in benchmark.network.instances if i.kind == kind]


def test_benchmark_counterexamples_are_genuine_and_hidden(soundness_benchmark, record_check):
    bench = soundness_benchmark
    net = bench.network.net.eval()
    cex = _instances(bench, "counterexample")
    problems: dict[str, str] = {}
    onnx = None
    try:
        from vcheck.soundness.vnncomp import onnx_logits

        onnx = onnx_logits
    except ImportError:  # pragma: no cover - the test extras install it
        pass
    torch.set_grad_enabled(False)  # restored below; nothing here needs gradients
    for inst in cex:
        x = torch.from_numpy(inst.x_star)[None]
        label = torch.tensor([inst.label])
        if not ((inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()):
            problems[inst.id] = "x* outside its box"
        elif (m32 := float(margin(net, x, label))) >= 0:
            problems[inst.id] = "x* not misclassified in float32"
        elif (m64 := float(margin(net.double(), x.double(), label))) >= 0:
            problems[inst.id] = "x* not misclassified in float64"
        else:
            noise = abs(m32 - m64)
            if onnx is not None:
                logits = onnx(bench.directory, inst.x_star[None])[0]
                noise = max(noise, abs(float(logits[inst.target] - logits[inst.label]) + m64))
                if logits[inst.label] >= logits[inst.target]:
                    problems[inst.id] = "x* not misclassified in ONNX Runtime"
            # Another CPU's float32 kernels round differently, by about as much as float32
            # differs from float64 here: a shallower x* would be a counterexample on some
            # machines only, so it is refused rather than trusted.
            if m64 > -FLOAT_NOISE_FACTOR * noise:
                problems.setdefault(
                    inst.id,
                    f"x* misclassified by only {-m64:.3g} in float64, within "
                    f"{FLOAT_NOISE_FACTOR}x its float32 rounding ({noise:.2g}); regenerate it "
                    "deeper",
                )
        net.float()
        if inst.found_by:
            problems.setdefault(inst.id, f"found by {inst.found_by[0]} at generation")
    # A clean instance's ground truth "sat" from a stored witness must hold up too (ties
    # count: Y_j >= Y_label); exact-arithmetic networks make that safe in every float type.
    for inst in _instances(bench, "clean"):
        if inst.ground_truth != "sat" or inst.x_star is None:
            continue
        x, label = torch.from_numpy(inst.x_star)[None], torch.tensor([inst.label])
        inside = (inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()
        if not inside or float(margin(net, x, label)) > 0:
            problems[inst.id] = "stored witness is not a counterexample"
    torch.set_grad_enabled(True)
    # A fresh attack with its own seed must not find them either.
    if cex:
        lower = torch.from_numpy(np.stack([i.lower for i in cex]))
        upper = torch.from_numpy(np.stack([i.upper for i in cex]))
        labels = torch.tensor([i.label for i in cex])
        found = pgd(
            net, lower, upper, labels, rel_step=0.02, steps=200, restarts=10, seed=12345
        ).found
        for inst, hit in zip(cex, found.tolist(), strict=True):
            if hit:
                problems.setdefault(inst.id, "found by a fresh PGD run")
    record_check(
        SUITE,
        "invalid_or_exposed_counterexamples",
        Measurement(
            len(problems),
            len(bench.network.instances),
            details={"problems": problems},
            exact=True,
        ),
        eval_set=bench.name,
        threshold=NONE_ALLOWED,
        note="; ".join(f"{k}: {v}" for k, v in sorted(problems.items())),
    )


def test_no_unsat_on_a_counterexample_instance(
    verdicts, verifier_spec, soundness_benchmark, record_check
):
    cex = _instances(soundness_benchmark, "counterexample")
    unsound = [i for i in cex if verdicts[i.id].verdict == "unsat"]
    note = "; ".join(
        f"{verifier_spec} said unsat on {i.id} ({soundness_benchmark.directory.name}), "
        f"but x* = {np.array2string(i.x_star.ravel(), precision=5, max_line_width=10**6)} "
        f"is a counterexample"
        for i in unsound
    )
    details = {
        "instances": [i.id for i in unsound],
        "verdicts": {i.id: verdicts[i.id].verdict for i in cex},
    }
    record_check(
        SUITE,
        f"unsat_on_counterexample[{verifier_spec}]",
        Measurement(len(unsound), len(cex), details=details, exact=True),
        eval_set=soundness_benchmark.name,
        threshold=NONE_ALLOWED,
        note=note,
    )


def test_returned_counterexamples_are_genuine(
    verdicts, verifier_spec, soundness_benchmark, record_check
):
    from vcheck.verify.base import check_counterexample

    bench = soundness_benchmark
    invalid: dict[str, str] = {}
    for inst in bench.network.instances:
        result = verdicts[inst.id]
        if result.verdict != "sat":
            continue
        if inst.ground_truth == "unsat":
            invalid[inst.id] = f"'sat' on an instance proved robust ({inst.ground_truth_method})"
        elif result.x is not None and (reason := check_counterexample(bench.network, inst, result)):
            invalid[inst.id] = reason
    record_check(
        SUITE,
        f"invalid_sat[{verifier_spec}]",
        Measurement(len(invalid), len(bench.network.instances), details=invalid, exact=True),
        eval_set=bench.name,
        threshold=NONE_ALLOWED,
        note="; ".join(f"{k}: {v}" for k, v in sorted(invalid.items())),
    )


def test_clean_instances(verdicts, verifier_spec, soundness_benchmark, record_check):
    clean = _instances(soundness_benchmark, "clean")
    counts = {
        v: sum(verdicts[i.id].verdict == v for i in clean)
        for v in ("unsat", "sat", "unknown", "timeout", "error")
    }
    n = len(clean)
    record_check(
        SUITE,
        f"verified_rate[{verifier_spec}]",
        Measurement(counts["unsat"] / n if n else 0.0, n, details=counts),
        eval_set=soundness_benchmark.name,
        threshold=None,
    )
    wrong = [i for i in clean if i.ground_truth == "sat" and verdicts[i.id].verdict == "unsat"]
    record_check(
        SUITE,
        f"unsat_on_falsified_clean[{verifier_spec}]",
        Measurement(len(wrong), n, details={"instances": [i.id for i in wrong]}, exact=True),
        eval_set=soundness_benchmark.name,
        threshold=NONE_ALLOWED,
        note="; ".join(
            f"{verifier_spec} said unsat on {i.id} ({soundness_benchmark.directory.name}), "
            f"which has a known counterexample ({i.ground_truth_method})"
            for i in wrong
        ),
    )


def test_every_instance_is_answered(
    verdicts, verifier_spec, soundness_benchmark, vcheck_session, record_check
):
    """A verifier that never answers must not pass: "error" and "timeout" verdicts count as
    unanswered (at most the profile's max_unanswered share, none under --strict). vcheck's own
    verifiers refusing a network they cannot bound soundly is a refusal, recorded as such:
    on those instances the counterexample gates above checked nothing."""
    instances = soundness_benchmark.network.instances
    n = len(instances)
    refused = {i.id: verdicts[i.id].reason for i in instances if verdicts[i.id].refused}
    unanswered = {
        i.id: f"{r.verdict}: {r.reason}" if r.reason else r.verdict
        for i in instances
        if (r := verdicts[i.id]).verdict in ("error", "timeout") and not r.refused
    }
    budget = vcheck_session.profile.soundness
    limit = 0.0 if vcheck_session.settings.strict else budget.max_unanswered
    first = next(iter(unanswered.items()), None)
    record_check(
        SUITE,
        f"unanswered[{verifier_spec}]",
        Measurement(len(unanswered) / n if n else 0.0, n, details={"instances": unanswered}),
        eval_set=soundness_benchmark.name,
        threshold=Threshold(limit, "max"),
        note=(
            f"{verifier_spec} left {len(unanswered)} of {n} instances unanswered, e.g. "
            f"{first[0]}: {first[1][:200]}"
            if first
            else ""
        ),
    )
    if refused:
        record_check(
            SUITE,
            f"refused[{verifier_spec}]",
            Measurement(len(refused) / n, n, details={"instances": sorted(refused)}),
            eval_set=soundness_benchmark.name,
            threshold=None,
            note=f"refused by design: {next(iter(refused.values()))[:200]}",
        )


def test_bounds_contain_sampled_outputs(bound_method):
    """Property-based: random small ReLU/Tanh nets and boxes; sampled outputs lie within the
    bounds, and at eps = 0 the bounds equal the forward pass."""
    try:
        from vcheck.verify.bounds import output_bounds
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"needs auto_LiRPA: {exc}")

    @settings(max_examples=10, deadline=None, derandomize=True, database=None)
    @given(
        seed=st.integers(0, 2**16),
        width=st.integers(2, 16),
        act=st.sampled_from([torch.nn.ReLU, torch.nn.Tanh]),
        eps=st.sampled_from([0.0, 0.01, 0.1]),
    )
    def check(seed, width, act, eps):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(6, width), act(), torch.nn.Linear(width, 3))
        center = torch.rand(1, 6) - 0.5
        lb, ub = output_bounds(net, center - eps, center + eps, bound_method)
        x = center + eps * (2 * torch.rand(500, 6) - 1)
        with torch.no_grad():
            y = net(x)
        assert (y >= lb - 1e-5).all() and (y <= ub + 1e-5).all()
        if eps == 0:
            torch.testing.assert_close(lb, net(center).detach(), atol=1e-4, rtol=0)

    check()


def test_model_certified_implies_robust_implies_clean(
    eval_set, vcheck_model, vcheck_session, record_check
):
    """On the model under test: certified (auto_LiRPA; CROWN for small models, IBP above
    300k parameters) <= robust (PGD) <= clean accuracy, sample by sample, at the profile's
    [soundness] model_eps; a certified sample broken by PGD fails the run."""
    from vcheck.evaluate.certified import cached_robustness_sample
    from vcheck.functional.intervals import wilson_interval
    from vcheck.verify.bounds import UnsupportedNetworkError

    budget = vcheck_session.profile.soundness
    try:
        sample = vcheck_session.memo(
            ("soundness", "model", eval_set.name),
            lambda: cached_robustness_sample(
                vcheck_model,
                eval_set,
                None
                if vcheck_session.settings.no_cache
                else vcheck_session.settings.cache_dir / "robustness",
                n=budget.model_samples,
                eps=budget.model_eps,
                seed=vcheck_session.settings.seed,
            ),
        )
    except ImportError as exc:
        pytest.skip(f"certified accuracy needs auto_LiRPA: {exc}")
    except UnsupportedNetworkError as exc:
        pytest.skip(f"auto_LiRPA cannot bound {vcheck_model.name}: {exc}")
    where = f"eps={sample.eps:.4g}, bounds={sample.method}"
    for name, mask in (
        ("clean", sample.clean),
        ("robust_pgd", sample.robust),
        ("certified", sample.certified),
    ):
        k = int(mask.sum())
        record_check(
            SUITE,
            f"{name}_accuracy@eps",
            Measurement(
                k / sample.n,
                sample.n,
                wilson_interval(k, sample.n, vcheck_session.settings.confidence),
                "wilson",
                {"setting": where},
            ),
            eval_set=eval_set.name,
            threshold=None,
        )
    broken = np.flatnonzero(sample.certified & ~sample.robust)
    record_check(
        SUITE,
        "certified_but_not_robust",
        Measurement(
            len(broken),
            sample.n,
            details={"samples": broken.tolist(), "setting": where},
            exact=True,
        ),
        eval_set=eval_set.name,
        threshold=NONE_ALLOWED,
        note=f"certified samples that PGD broke or that are misclassified: {broken.tolist()}",
    )
