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
from vcheck.errors import VcheckError
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report.document import write_atomic
from vcheck.soundness.pool import (
    benchmark_root,
    session_benchmarks,
    session_cache,
    session_pool,
)
from vcheck.soundness.runner import BUILTIN, resolve_verifier, run_verifier

SUITE = "soundness"
NONE_ALLOWED = Threshold(0.0, "max")
LIRPA_METHODS = ("IBP", "CROWN", "alpha-CROWN")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    if "verifier_spec" in metafunc.fixturenames:
        metafunc.parametrize("verifier_spec", list(session.settings.verifiers) or list(BUILTIN))
    if "bound_method" in metafunc.fixturenames:
        specs = list(session.settings.verifiers) or list(BUILTIN)
        methods = [m for m in LIRPA_METHODS if m in specs]
        metafunc.parametrize("bound_method", methods or [NOTHING_TO_CHECK])
    if "benchmark_name" in metafunc.fixturenames:
        root = benchmark_root(session)
        names = (
            sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())
            if (root.is_dir())
            else []
        )
        metafunc.parametrize("benchmark_name", names or [NOTHING_TO_CHECK])


@pytest.fixture
def soundness_benchmark(benchmark_name, vcheck_session):
    return session_benchmarks(vcheck_session)[benchmark_name]


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

    pool = session_pool(vcheck_session)
    if pool is not None and (verifier_spec, soundness_benchmark.name) in pool:
        return vcheck_session.memo(
            ("soundness", verifier_spec, soundness_benchmark.name),
            lambda: pool.verdicts(verifier_spec, soundness_benchmark.name),
        )

    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny networks: one thread is faster and deterministic
        try:
            return run_verifier(
                verifier,
                soundness_benchmark,
                session_cache(vcheck_session, "verdicts"),
                write=vcheck_session.write_line,
                label=verifier_spec,
                interval=2.0 if interactive else 30.0,  # a CI log gets a few lines
            )
        finally:
            torch.set_num_threads(threads)

    return vcheck_session.memo(("soundness", verifier_spec, soundness_benchmark.name), run)


def _instances(benchmark, kind):
    return [i for i in benchmark.network.instances if i.kind == kind]


def test_benchmark_counterexamples_are_genuine_and_hidden(
    soundness_benchmark, vcheck_session, record_check
):
    from vcheck.soundness.recheck import cached_benchmark_problems

    bench = soundness_benchmark
    cache = session_cache(vcheck_session, "soundness_recheck")
    problems = cached_benchmark_problems(bench, cache)
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


def _margins_at_x_star(benchmark) -> dict[str, float]:
    """Each counterexample instance's margin at its x*, in float64."""
    import copy

    from vcheck.soundness.attacks import margin

    cex = _instances(benchmark, "counterexample")
    if not cex:
        return {}
    net64 = copy.deepcopy(benchmark.network.net).double().eval()
    x = torch.from_numpy(np.stack([i.x_star for i in cex])).double()
    with torch.no_grad():
        at_x = margin(net64, x, torch.tensor([i.label for i in cex])).tolist()
    return {i.id: m for i, m in zip(cex, at_x, strict=True)}


def test_bounds_stay_below_the_planted_counterexamples(
    verdicts, verifier_spec, soundness_benchmark, vcheck_session, record_check
):
    """Informational: how far a bound method's margin lower bound over a box rises above the
    margin at the box's planted x* (float64). A sound bound stays at or below it; float32
    bounds computed without outward rounding may exceed it by rounding. That matters on the
    graded networks, whose shallowest x* is 1e-4 deep: a positive excess there is how close
    the method came to "proving" a genuine counterexample (README, "Tolerance bugs")."""
    cex = [
        i
        for i in _instances(soundness_benchmark, "counterexample")
        if verdicts[i.id].bound is not None
    ]
    if not cex:  # branch and bound, external verifiers and refusals report no bound
        return
    at_x = vcheck_session.memo(
        ("soundness", "x_star_margins", soundness_benchmark.name),
        lambda: _margins_at_x_star(soundness_benchmark),
    )
    rows = {
        i.id: {
            "bound": verdicts[i.id].bound,
            "margin_at_x_star": at_x[i.id],
            "excess": verdicts[i.id].bound - at_x[i.id],
        }
        for i in cex
    }
    worst = max(rows, key=lambda k: rows[k]["excess"])
    excess = rows[worst]["excess"]
    record_check(
        SUITE,
        f"bound_excess_over_counterexample[{verifier_spec}]",
        Measurement(excess, len(cex), details={"instances": rows}, exact=True),
        eval_set=soundness_benchmark.name,
        threshold=None,
        note=(
            f"{verifier_spec}'s margin lower bound over the box of {worst} is {excess:.3g} "
            f"above the margin at its x* ({rows[worst]['margin_at_x_star']:.6g})"
            if excess > 0
            else ""
        ),
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


def test_bounds_contain_sampled_outputs(bound_method, vcheck_session):
    """Property-based: random small ReLU/Tanh nets and boxes; sampled outputs lie within the
    bounds, and at eps = 0 the bounds equal the forward pass. Derandomized, so a pass is
    cached by the method, this test's source, vcheck's verifier code and the versions of
    torch, auto_LiRPA and hypothesis: a warm run does not bound the same nets again."""
    try:
        from vcheck.verify._lirpa_compat import import_auto_lirpa
        from vcheck.verify.bounds import output_bounds

        # Before hypothesis runs: auto_LiRPA raises the recursion limit when imported, and
        # hypothesis warns when a test body changes it.
        import_auto_lirpa()
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"needs auto_LiRPA: {exc}")
    passed = _pass_marker(vcheck_session, bound_method)
    if passed is not None and passed.is_file():
        return

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
    if passed is not None:
        write_atomic(passed, "passed\n")


def _pass_marker(session, method):
    """Where a pass of test_bounds_contain_sampled_outputs for ``method`` is recorded."""
    import hashlib
    import importlib.metadata
    import inspect

    from vcheck.soundness.runner import code_fingerprint

    if session.settings.no_cache:
        return None
    parts = [method, inspect.getsource(test_bounds_contain_sampled_outputs), code_fingerprint()]
    parts += [importlib.metadata.version(p) for p in ("torch", "auto-lirpa", "hypothesis")]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return session.settings.cache_dir / "soundness_properties" / f"{key}.passed"


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
                session_cache(vcheck_session, "robustness"),
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
    _record_certified_but_not_robust(
        record_check, "certified_but_not_robust", sample, where, eval_set.name
    )


def _record_certified_but_not_robust(record_check, metric, sample, where, eval_name) -> None:
    """A certified sample that PGD broke or that is misclassified: a bug in the bounds or
    the model wrapper, never a property of the model (none allowed)."""
    broken = np.flatnonzero(sample.certified & ~sample.robust)
    record_check(
        SUITE,
        metric,
        Measurement(
            len(broken),
            sample.n,
            details={"samples": broken.tolist(), "setting": where},
            exact=True,
        ),
        eval_set=eval_name,
        threshold=NONE_ALLOWED,
        note=f"certified samples that PGD broke or that are misclassified: {broken.tolist()}",
    )


def test_bounds_certify_the_control_model(vcheck_session, record_check):
    """The same check on the profile's control model (a small zoo network that CROWN bounds
    tightly), so the bound path is exercised even when the model under test is too large
    for CROWN and IBP certifies nothing: its certified accuracy must reach the profile's
    floor (a bound that stopped certifying fails) and PGD must break none of its certified
    samples (an unsound bound or wrapper fails)."""
    from vcheck.config import VcheckConfig
    from vcheck.data.sources import eval_set_names, load_eval_set
    from vcheck.evaluate.certified import cached_robustness_sample
    from vcheck.functional.intervals import wilson_interval
    from vcheck.models import resolve_model

    budget = vcheck_session.profile.soundness
    if not budget.control_model:
        pytest.skip('the profile leaves the control model out (control_model = "")')
    try:
        from vcheck.verify._lirpa_compat import import_auto_lirpa

        import_auto_lirpa()
    except ImportError as exc:
        pytest.skip(f"certified accuracy needs auto_LiRPA: {exc}")
    settings_ = vcheck_session.settings

    def measure():
        ref = resolve_model(budget.control_model, None)
        own = VcheckConfig(model=budget.control_model, seed=settings_.seed)
        eval_set = load_eval_set(eval_set_names(ref.cfg, own)[0], ref.cfg, own)
        model = ref.load(torch.device("cpu"))
        sample = cached_robustness_sample(
            model,
            eval_set,
            session_cache(vcheck_session, "robustness"),
            n=budget.model_samples,
            eps=budget.model_eps,
            seed=settings_.seed,
        )
        return eval_set.name, sample

    try:
        eval_name, sample = vcheck_session.memo(("soundness", "control"), measure)
    except VcheckError as exc:  # e.g. the Fashion-MNIST files are missing
        pytest.skip(f"control model {budget.control_model}: {exc}")
    where = f"model={budget.control_model}, eps={sample.eps:.4g}, bounds={sample.method}"
    k = int(sample.certified.sum())
    record_check(
        SUITE,
        "control_certified_accuracy@eps",
        Measurement(
            k / sample.n,
            sample.n,
            wilson_interval(k, sample.n, settings_.confidence),
            "wilson",
            {"setting": where, "robust_pgd": float(sample.robust.mean())},
        ),
        eval_set=eval_name,
        threshold=Threshold(budget.control_min_certified, "min"),
        note=f"{budget.control_model}: bounds certified {k} of {sample.n} samples ({where})",
    )
    _record_certified_but_not_robust(
        record_check, "control_certified_but_not_robust", sample, where, eval_name
    )
