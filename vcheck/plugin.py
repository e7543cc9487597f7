"""vcheck's pytest plugin: the ``vcheck`` option group, the session state, fixtures, reports.

The plugin is dormant until something needs it: a vcheck option on the command line, the
``suites/`` conftest (which calls :func:`activate`), or a test requesting a vcheck fixture.
Activation resolves ``--model``, the threshold profile and the eval sets cheaply, so a typo
or a missing file is a usage error (exit 4) before any test runs; weights and data are then
loaded once collection is done, and predictions on first use.

Fixtures: ``vcheck_config``, ``vcheck_model``, ``vcheck_profile``, ``eval_set``
(parametrized over the model's eval sets), ``predictions``, ``accuracy``, ``sanity_probe``,
``record_check``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vcheck import hookspecs
from vcheck.checks import CheckResult, Measurement, Threshold
from vcheck.config import DEVICES, GATES, VcheckConfig, build_config
from vcheck.errors import VcheckError

STASH: pytest.StashKey[VcheckSession] = pytest.StashKey()
_FIXTURES = {
    "vcheck_model",
    "eval_set",
    "predictions",
    "accuracy",
    "sanity_probe",
    "record_check",
    "record_artifact",
    "vcheck_session",
}
_CHECK_PROPERTY = "vcheck.check"
_ARTIFACT_PROPERTY = "vcheck.artifact"
NOTHING_TO_CHECK = "nothing-to-check"
"""Parametrize with this alone when a profile gives a test nothing to check: the test is
deselected, rather than skipped (which ``--strict`` would count as a failure)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


_positive_int.__name__ = "positive integer"  # argparse names the type in its error


def _count_or_all(text: str) -> int:
    if text == "all":
        return 0
    value = int(text)
    if value < 1:
        raise ValueError
    return value


_count_or_all.__name__ = "positive integer or 'all'"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vcheck", "vcheck: release gates for image classifiers")
    add = group.addoption
    add(
        "--model",
        dest="vcheck_model",
        metavar="NAME",
        help="model to gate: zoo name, torchvision name/alias (convnext_t), checkpoint path "
        "or package.module:factory (default: fmnist_cnn)",
    )
    add(
        "--weights",
        dest="vcheck_weights",
        metavar="PATH",
        help="weights file overriding the model's default weights",
    )
    add("--device", dest="vcheck_device", choices=DEVICES, help="where to run the model (auto)")
    add(
        "--data-root",
        dest="vcheck_data_root",
        metavar="DIR",
        help="data folder: Fashion-MNIST files, or an ImageFolder for ImageNet models",
    )
    add(
        "--vcheck-config",
        dest="vcheck_config_file",
        metavar="TOML",
        help="vcheck settings file (keys as in [tool.vcheck] of pyproject.toml)",
    )
    add(
        "--profile",
        dest="vcheck_profile",
        metavar="TOML",
        help="threshold profile (default: the model's profile in fixtures/profiles)",
    )
    add(
        "--max-samples",
        dest="vcheck_max_samples",
        type=_positive_int,
        metavar="N",
        help="evaluate a seeded, class-stratified subset of N samples per eval set",
    )
    add("--seed", dest="vcheck_seed", type=int, metavar="N", help="seed of every random choice (0)")
    add(
        "--gate",
        dest="vcheck_gate",
        choices=GATES,
        help="how intervals gate: point estimate (default), lower = conservative bound must "
        "pass, upper = fail only when confidently below",
    )
    add(
        "--report",
        dest="vcheck_report",
        metavar="HTML",
        help="HTML report path (default: reports/<model>.html)",
    )
    add(
        "--metrics-json",
        dest="vcheck_metrics_json",
        metavar="PATH",
        help="metrics JSON path (default: the report path with .metrics.json)",
    )
    add(
        "--cache-dir",
        dest="vcheck_cache_dir",
        metavar="DIR",
        help="prediction and data cache (default: $VCHECK_CACHE_DIR or ~/.cache/vcheck)",
    )
    add(
        "--no-cache",
        dest="vcheck_no_cache",
        action="store_true",
        default=None,
        help="recompute predictions instead of reading or writing the cache",
    )
    add(
        "--verifier",
        dest="vcheck_verifiers",
        action="append",
        metavar="SPEC",
        help="verifier for the soundness suite (repeatable): IBP, CROWN, alpha-CROWN, BaB, "
        "'cmd:<command with {onnx} {vnnlib} {timeout} {result}>' or package.module:object "
        "(default: the four built-in ones)",
    )
    add(
        "--soundness-dir",
        dest="vcheck_soundness_dir",
        metavar="DIR",
        help="folder of VNN-COMP benchmark folders (default: fixtures/soundness)",
    )
    add(
        "--soundness-instances",
        dest="vcheck_soundness_instances",
        type=_count_or_all,
        metavar="N|all",
        help="run the soundness suite on the first N counterexample and N clean instances of "
        "each benchmark network (default 3), or on all of them",
    )
    add(
        "--baseline",
        dest="vcheck_baseline",
        metavar="JSON",
        help="metrics JSON of an earlier release: adds non-regression checks (tolerances in "
        "the profile's [baseline] table; McNemar on per-sample top-1 correctness)",
    )
    add(
        "--batch-size",
        dest="vcheck_batch_size",
        type=_positive_int,
        metavar="N",
        help="inference batch size (256)",
    )


_CLI_KEYS = (
    "model",
    "weights",
    "device",
    "data_root",
    "profile",
    "max_samples",
    "seed",
    "gate",
    "report",
    "metrics_json",
    "cache_dir",
    "no_cache",
    "batch_size",
    "verifiers",
    "soundness_dir",
    "soundness_instances",
    "baseline",
)


@pytest.hookimpl(tryfirst=True)  # before conftests that call activate()
def pytest_configure(config: pytest.Config) -> None:
    cli = {key: config.getoption(f"vcheck_{key}") for key in _CLI_KEYS}
    # pytest owns --strict (strict markers, config, xfail...); vcheck adds: skips fail too.
    cli["strict"] = bool(config.getoption("strict", default=False)) or None
    config_file = config.getoption("vcheck_config_file")
    try:
        settings = build_config(
            cli, Path(config_file) if config_file else None, config.rootpath / "pyproject.toml"
        )
    except VcheckError as exc:
        raise pytest.UsageError(f"vcheck: {exc}") from None
    session = VcheckSession(config, settings)
    config.stash[STASH] = session
    config.pluginmanager.register(session, "vcheck-session")
    if config_file or any(v not in (None, False) for v in cli.values()):
        session.activate()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(STASH, None)
    if session is not None:
        config.pluginmanager.unregister(session)
        del config.stash[STASH]


def prefer_passive_openmp() -> None:
    """Let torch's OpenMP threads sleep at barriers instead of spinning, unless the user set
    ``OMP_WAIT_POLICY``. With the background verifiers on the other core the spinning took
    CPU they needed; passive waiting changes no result (the work is split the same way) and
    cut a cold default run by 8 to 22 s (README, Performance). Only effective before torch
    is first imported, so the suites' and tests' conftests call it at import, not the
    plugin: an unrelated pytest session in the same environment is left alone."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def activate(config: pytest.Config) -> None:
    """Resolve model, profile and eval sets now (called by the suites' conftest)."""
    config.stash[STASH].activate()


def session_of(config: pytest.Config) -> VcheckSession:
    """The active :class:`VcheckSession` (activating it if needed)."""
    session = config.stash[STASH]
    session.activate()
    return session


class VcheckSession:
    """State of one run: resolved model and data, memoised results, recorded checks."""

    def __init__(self, config: pytest.Config, settings: VcheckConfig) -> None:
        self.config = config
        self.settings = settings
        self.active = False
        self.started = time.perf_counter()
        self.ref = None
        self.profile = None
        self.eval_set_names: list[str] = []
        self.model = None
        self.eval_sets: dict[str, Any] = {}
        self._predictions: dict[str, Any] = {}
        self._accuracy: dict[tuple[str, str | None], Any] = {}
        self._probes: dict[str, Any] = {}
        self._memo: dict[Any, Any] = {}
        self.checks: list[CheckResult] = []
        self.artifacts: list[dict[str, Any]] = []
        self.outcomes: dict[str, str] = {}
        self.problems: dict[str, dict[str, str]] = {}
        self.failed_check_nodeids: set[str] = set()
        self.worker_info: list[dict[str, Any]] = []  # what xdist workers measured
        self.baseline_doc: dict[str, Any] | None = None

    # -- activation and loading ----------------------------------------------------------
    def activate(self) -> None:
        if self.active:
            return
        from vcheck.cache import check_cache_dir
        from vcheck.data.sources import check_available, eval_set_names
        from vcheck.models import resolve_model
        from vcheck.profiles import load_profile

        s = self.settings
        try:
            if not s.no_cache:
                check_cache_dir(s.cache_dir)
            self.ref = resolve_model(s.model, s.weights)
            self.profile = load_profile(s.profile or self.ref.profile, self.ref.cfg.classes)
            self.eval_set_names = eval_set_names(self.ref.cfg, s)
            check_available(self.ref.cfg, s)
            self.device = _device(s.device)
            self._check_outputs()
        except VcheckError as exc:
            raise pytest.UsageError(f"vcheck: {exc}") from None
        self.active = True

    def load(self) -> None:
        """Load weights and eval sets (usage error on failure); idempotent."""
        if self.model is not None:
            return
        from vcheck.data.sources import load_eval_set

        self.activate()
        try:
            eval_sets = {
                n: load_eval_set(n, self.ref.cfg, self.settings) for n in self.eval_set_names
            }
            model = self.ref.load(self.device)
        except VcheckError as exc:
            raise pytest.UsageError(f"vcheck: {exc}") from None
        self._check_baseline_data(eval_sets)
        self.config.hook.pytest_vcheck_model_loaded(model=model)
        self.model, self.eval_sets = model, eval_sets
        for es in eval_sets.values():
            for line in es.extra.get("notes", ()):  # e.g. the ImageNet layout detected
                self.write_line(f"vcheck: {es.name}: {line}")

    def _check_outputs(self) -> None:
        """Output paths and the baseline file are checked before any test (exit 4)."""
        from vcheck.report.outputs import check_output_paths

        s = self.settings
        if not hasattr(self.config, "workerinput"):  # the controller checks for its workers
            check_output_paths(s.report_path, s.metrics_json_path)
        if s.baseline is not None:
            from vcheck.report.baseline import load_baseline

            self.baseline_doc = load_baseline(s.baseline)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """xdist controller: check the baseline's data here, once, before workers start (a
        worker's usage error would not stop the run with one line)."""
        if self.baseline_doc is None or hasattr(self.config, "workerinput"):
            return
        if self.config.getoption("dist", "no") == "no":
            return  # a serial run checks it when it loads the data
        from vcheck.data.sources import load_eval_set

        try:
            eval_sets = {
                n: load_eval_set(n, self.ref.cfg, self.settings) for n in self.eval_set_names
            }
        except VcheckError as exc:
            raise pytest.UsageError(f"vcheck: {exc}") from None
        self._check_baseline_data(eval_sets)

    def _check_baseline_data(self, eval_sets: dict[str, Any]) -> None:
        if self.baseline_doc is None:
            return
        from vcheck.report.baseline import check_eval_sets

        prints = {name: es.fingerprint for name, es in eval_sets.items()}
        try:
            check_eval_sets(self.baseline_doc, self.settings.baseline, prints)
        except VcheckError as exc:
            raise pytest.UsageError(f"vcheck: {exc}") from None

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        empty = [
            item
            for item in items
            if hasattr(item, "callspec")
            and any(v is NOTHING_TO_CHECK for v in item.callspec.params.values())
        ]
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [item for item in items if item not in empty]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return
        if any(_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
            self.load()

    # -- memoised work -------------------------------------------------------------------
    def write_line(self, line: str) -> None:
        """A progress line on the terminal, even while output is captured (none under
        ``-q -q``)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or self.config.get_verbosity() <= -2:
            return
        ctx = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with ctx:
            reporter.write_line(line)

    def predictions(self, name: str):
        if name not in self._predictions:
            from vcheck.predictions import get_predictions

            self.load()
            s = self.settings
            preds = get_predictions(
                self.model,
                self.eval_sets[name],
                self.result_cache("predictions"),
                s.batch_size,
                s.num_workers,
                self.write_line,
            )
            if preds.from_cache:
                self.write_line(f"vcheck: {self.model.name} on {name}: predictions from cache")
            if preds.undecodable:
                from vcheck.predictions import drop_undecodable

                preds, self.eval_sets[name], line = drop_undecodable(preds, self.eval_sets[name])
                self.write_line(line)
                self._memo[("undecodable", name)] = line
            self._predictions[name] = preds
        if self.settings.strict and ("undecodable", name) in self._memo:
            pytest.skip(self._memo[("undecodable", name)])  # a failure under --strict
        return self._predictions[name]

    def accuracy(self, name: str, slice_name: str | None = None):
        """AccuracyEvaluator of an eval set or one of the profile's slices (None if empty)."""
        key = (name, slice_name)
        if key not in self._accuracy:
            from vcheck.evaluate.accuracy import AccuracyEvaluator

            if slice_name is None:
                acc = self.profile.accuracy
                preds = self.predictions(name)
                classes = self.eval_sets[name].classes  # ImageNet-A/R: their 200 classes
                whole_model = len(classes) == len(self.model.classes)
                self._accuracy[key] = AccuracyEvaluator(
                    preds,
                    classes,
                    priors=acc.class_priors if whole_model else None,
                    resamples=self.settings.bootstrap_resamples,
                    seed=self.settings.seed,
                    confidence=self.settings.confidence,
                    cache=self.result_cache("intervals"),
                )
            else:
                whole = self.accuracy(name)
                spec = next(s for s in self.profile.accuracy.slices if s.name == slice_name)
                if spec.ids is not None:
                    mask = np.array([i in spec.ids for i in whole.predictions.ids], dtype=bool)
                else:
                    wanted = [whole.classes.index(c) for c in spec.classes if c in whole.classes]
                    mask = np.isin(whole.labels, wanted)
                idx = np.flatnonzero(mask)
                self._accuracy[key] = whole.subset(idx) if len(idx) else None
        return self._accuracy[key]

    def probe(self, name: str):
        """The sanity probe of ``name``, cached like its predictions (same model, weights,
        preprocessing and images give the same probe), so a warm run runs no forward pass."""
        if name not in self._probes:
            from vcheck.evaluate.sanity import cached_probe

            self.load()
            self._probes[name] = cached_probe(
                self.model, self.eval_sets[name], self.result_cache("sanity")
            )
        return self._probes[name]

    def result_cache(self, namespace: str):
        """The :class:`~vcheck.cache.ResultCache` of ``namespace`` (disabled by --no-cache)."""
        from vcheck.cache import ResultCache

        key = ("result_cache", namespace)
        if key not in self._memo:
            root = None if self.settings.no_cache else self.settings.cache_dir
            self._memo[key] = ResultCache(root, namespace)
        return self._memo[key]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key for the session (e.g. a verifier over a benchmark)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- recording -------------------------------------------------------------------------
    def record(self, item: pytest.Item, result: CheckResult) -> None:
        item.user_properties.append((_CHECK_PROPERTY, json.dumps(result.to_json())))
        item.user_properties.append(
            (f"vcheck.{result.suite}.{result.subject.replace(' on ', '.')}", result.value)
        )
        self.config.hook.pytest_vcheck_check_recorded(result=result)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if self.settings.strict and report.skipped and not hasattr(report, "wasxfail"):
            reason = _skip_reason(report)
            report.outcome = "failed"
            report.longrepr = f"skipped under --strict: {reason}"
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == _CHECK_PROPERTY and report.when == "call":
                result = _check_from_json(json.loads(value))
                self.checks.append(result)
                if result.outcome == "fail":
                    self.failed_check_nodeids.add(report.nodeid)
            elif name == _ARTIFACT_PROPERTY and report.when == "call":
                self.artifacts.append(json.loads(value))
        nodeid = report.nodeid
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
            self.outcomes[nodeid] = outcome
            if nodeid not in self.failed_check_nodeids:
                message = report.longreprtext.strip().splitlines()
                self.problems[nodeid] = {
                    "nodeid": nodeid,
                    "outcome": outcome,
                    "message": message[-1][:300] if message else "",
                }
        elif report.skipped and nodeid not in self.outcomes:
            self.outcomes[nodeid] = "skipped"
            self.problems[nodeid] = {
                "nodeid": nodeid,
                "outcome": "skipped",
                "message": _skip_reason(report),
            }
        elif report.when == "call" and report.passed and nodeid not in self.outcomes:
            self.outcomes[nodeid] = "passed"

    # -- outputs -----------------------------------------------------------------------------
    def run_info(self) -> dict[str, Any] | None:
        """Model, eval sets, per-sample correctness and versions of what this process (or,
        on the xdist controller, its workers) measured; None if nothing was loaded."""
        from vcheck.report.document import ids_digest, pack_bits, versions

        if self.model is None:
            return _merge_worker_info(self.worker_info)
        per_sample = {}
        for name, acc in self._accuracy.items():
            if name[1] is None and acc is not None:
                per_sample[name[0]] = {
                    "n": acc.n,
                    "ids_sha256": ids_digest(acc.predictions.ids),
                    "top1_correct": pack_bits(acc.correct(1)),
                }
        return {
            "model": self.model.describe(),
            "eval_sets": [self.eval_sets[n].describe() for n in self.eval_sets],
            "per_sample": per_sample,
            "versions": versions(),
        }

    def document(self, info: dict[str, Any], error: dict[str, str] | None = None):
        from vcheck.report.document import build_document

        checks = [c.to_json() for c in self.checks]
        baseline = None
        if self.baseline_doc is not None:
            from vcheck.report import baseline as bl

            compared = bl.compare(
                self.baseline_doc,
                checks,
                info["per_sample"],
                self.profile.table(bl.SUITE),
                self.settings.gate,
            )
            self.checks.extend(compared)
            checks.extend(c.to_json() for c in compared)
            baseline = bl.describe(self.baseline_doc, self.settings.baseline, len(compared))
        return build_document(
            model=info["model"],
            eval_sets=info["eval_sets"],
            settings=self.settings.as_dict(),
            profile=self.profile.describe() if self.profile else {"path": None, "sha256": None},
            checks=checks,
            artifacts=self.artifacts,
            test_outcomes=self.outcomes,
            problems=list(self.problems.values()),
            per_sample=info["per_sample"],
            error=error,
            baseline=baseline,
            versions_=info["versions"],
        )

    def _error_document(self, info: dict[str, Any] | None, error: dict[str, str]):
        """Whatever can still be said about a run that crashed after its tests."""
        import vcheck
        from vcheck.report.document import build_document
        from vcheck.report.outputs import json_safe

        info = info or {}
        checks = []
        for c in self.checks:
            with contextlib.suppress(Exception):
                checks.append(json_safe(c.to_json()))
        model = info.get("model") or {
            "name": self.settings.model,
            "fingerprint": "",
            "source": "",
            "domain": "",
            "num_classes": 0,
        }
        return json_safe(
            build_document(
                model=model,
                eval_sets=info.get("eval_sets") or [],
                settings=self.settings.as_dict(),
                profile=self.profile.describe() if self.profile else {"path": None, "sha256": None},
                checks=checks,
                artifacts=[],
                test_outcomes=self.outcomes,
                problems=list(self.problems.values()),
                per_sample=info.get("per_sample") or {},
                error=error,
                versions_=info.get("versions") or {"vcheck": vcheck.__version__, "torch": ""},
            )
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """xdist controller: collect what each worker measured (see pytest_sessionfinish)."""
        data = getattr(node, "workeroutput", {}).get("vcheck")
        if data:
            self.worker_info.append(json.loads(data))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.option.collectonly or not self.active:
            return
        if hasattr(self.config, "workerinput"):  # xdist worker: hand results to the controller
            if self.model is not None:
                self.config.workeroutput["vcheck"] = json.dumps(self.run_info(), allow_nan=False)
            return
        self._write_outputs(session)

    def _write_outputs(self, session: pytest.Session) -> None:
        """metrics JSON and report, always: a crash here still writes both, verdict ERROR."""
        from vcheck.report.document import dumps, error_info, write_atomic
        from vcheck.report.html import render
        from vcheck.report.outputs import error_page

        info = None
        error = None
        try:
            info = self.run_info()
            if info is None:
                return  # nothing was measured (usage error, or no vcheck test collected)
            if session.exitstatus in (
                pytest.ExitCode.INTERRUPTED,
                pytest.ExitCode.INTERNAL_ERROR,
            ):
                ran = sum(v != "skipped" for v in self.outcomes.values())
                error = error_info(
                    "running the tests",
                    f"the run stopped early (pytest exit status {int(session.exitstatus)}, "
                    f"{ran} tests ran); its results are incomplete",
                )
            doc = self.document(info, error)
            text = dumps(doc)
        except Exception as exc:  # a crash after the tests must not lose the run
            error = error_info("building the metrics document", exc)
            doc = self._error_document(info, error)
            text = dumps(doc)
        s = self.settings
        write_atomic(s.metrics_json_path, text)
        try:
            html = render(doc, time.perf_counter() - self.started)
        except Exception as exc:
            if doc["verdict"] != "ERROR":
                doc = self._error_document(info, error_info("rendering the HTML report", exc))
                write_atomic(s.metrics_json_path, dumps(doc))
            html = error_page(doc, str(exc))
        write_atomic(s.report_path, html)
        self.doc = doc
        if doc["verdict"] == "ERROR":
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        elif doc["verdict"] == "FAIL" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # e.g. every gate was skipped

    def pytest_terminal_summary(self, terminalreporter) -> None:
        doc = getattr(self, "doc", None)
        if doc is None:
            return
        counts = doc["summary"]["checks"]
        verdict = doc["verdict"]
        terminalreporter.write_sep(
            "=", f"vcheck {verdict}", green=verdict == "PASS", red=verdict != "PASS", bold=True
        )
        if doc["error"]:
            terminalreporter.write_line(
                f"vcheck ERROR while {doc['error']['stage']}: {doc['error']['reason']}", red=True
            )
        for check in (c for c in self.checks if c.outcome == "fail"):
            terminalreporter.write_line(f"FAILED CHECK {check.message()}", red=True)
        gate = self.settings.gate
        refused = [c for c in self.checks if c.refusal]
        if refused:
            terminalreporter.write_line(
                f"{len(refused)} checks cannot be gated with --gate {gate} (no usable interval; "
                "see their FAILED CHECK lines): " + ", ".join(c.subject for c in refused),
                red=True,
            )
        exact = [c for c in self.checks if c.exact and c.threshold and gate != "point"]
        if exact:
            terminalreporter.write_line(
                f"{len(exact)} checks of exact properties are compared as measured under "
                f"--gate {gate}: " + ", ".join(sorted({c.metric for c in exact}))
            )
        terminalreporter.write_line(
            f"{counts['pass']} checks passed, {counts['fail']} failed, {counts['info']} "
            f"informational; model {doc['model']['name']} {doc['model']['fingerprint'][:12]}"
        )
        terminalreporter.write_line(f"report:  {self.settings.report_path}")
        terminalreporter.write_line(f"metrics: {self.settings.metrics_json_path}")


def _merge_worker_info(infos: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One run's info from its xdist workers' (same model; eval sets and per-sample data of
    whichever worker computed them)."""
    if not infos:
        return None
    eval_sets: dict[str, Any] = {}
    per_sample: dict[str, Any] = {}
    for info in infos:
        eval_sets.update((e["name"], e) for e in info["eval_sets"])
        per_sample.update(info["per_sample"])
    return {
        "model": infos[0]["model"],
        "eval_sets": list(eval_sets.values()),
        "per_sample": per_sample,
        "versions": infos[0]["versions"],
    }


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from vcheck.errors import InvalidArgument

        raise InvalidArgument("--device=cuda but no CUDA device is visible; use --device=auto")
    return torch.device(name)


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _check_from_json(d: dict[str, Any]) -> CheckResult:
    threshold = Threshold(d["threshold"], d["direction"]) if d["threshold"] is not None else None
    value = d["value"] if d["value"] is not None else float("nan")
    return CheckResult(
        suite=d["suite"],
        metric=d["metric"],
        eval_set=d["eval_set"],
        value=value,
        n=d["n"],
        threshold=threshold,
        ci=tuple(d["ci"]) if d["ci"] else None,
        ci_method=d["ci_method"],
        gate=d["gate"],
        slice=d["slice"],
        nodeid=d["nodeid"],
        details={k: v for k, v in d["details"].items() if k != "gate_refusal"},
        exact=d.get("exact", False),
    )


# -- fixtures ---------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eval_set" in metafunc.fixturenames:
        names = session_of(metafunc.config).eval_set_names
        metafunc.parametrize("eval_set", names, indirect=True, ids=names)


@pytest.fixture(scope="session")
def vcheck_session(request: pytest.FixtureRequest) -> VcheckSession:
    """The run's :class:`VcheckSession`, with model and eval sets loaded."""
    session = session_of(request.config)
    session.load()
    return session


@pytest.fixture(scope="session")
def vcheck_config(request: pytest.FixtureRequest) -> VcheckConfig:
    """The resolved :class:`~vcheck.config.VcheckConfig` of this run."""
    return request.config.stash[STASH].settings


@pytest.fixture(scope="session")
def vcheck_model(vcheck_session: VcheckSession):
    """The :class:`~vcheck.models.ModelUnderTest` chosen by ``--model``, in eval mode."""
    return vcheck_session.model


@pytest.fixture(scope="session")
def vcheck_profile(vcheck_session: VcheckSession):
    """The threshold :class:`~vcheck.profiles.Profile` of this run."""
    return vcheck_session.profile


@pytest.fixture
def eval_set(request: pytest.FixtureRequest, vcheck_session: VcheckSession):
    """One eval set of the model's domain; tests using it run once per eval set.

    Example::

        def test_has_images(eval_set):
            assert len(eval_set) > 0
    """
    name = getattr(request, "param", None)
    if name is None:
        raise pytest.UsageError(
            "the eval_set fixture is parametrized by vcheck; do not override it"
        )
    return vcheck_session.eval_sets[name]


@pytest.fixture
def predictions(eval_set, vcheck_session: VcheckSession):
    """Cached :class:`~vcheck.predictions.Predictions` of the model on ``eval_set``."""
    return vcheck_session.predictions(eval_set.name)


@pytest.fixture
def accuracy(eval_set, vcheck_session: VcheckSession):
    """Memoised :class:`~vcheck.evaluate.accuracy.AccuracyEvaluator` for ``eval_set``."""
    return vcheck_session.accuracy(eval_set.name)


@pytest.fixture
def sanity_probe(eval_set, vcheck_session: VcheckSession):
    """:class:`~vcheck.evaluate.sanity.ProbeResult` of re-running a few images of ``eval_set``."""
    return vcheck_session.probe(eval_set.name)


@pytest.fixture
def record_check(
    request: pytest.FixtureRequest, vcheck_session: VcheckSession
) -> Callable[..., CheckResult]:
    """Record a measurement as a check; fails the test with a readable line if it fails.

    Example::

        def test_top1(accuracy, eval_set, record_check):
            record_check("accuracy", "top1", accuracy.measure("top1"), eval_set=eval_set.name,
                         threshold=Threshold(0.9, "min"))
    """

    def record(
        suite: str,
        metric: str,
        measurement: Measurement,
        *,
        eval_set: str,
        threshold: Threshold | None,
        slice: str | None = None,
        note: str = "",
    ) -> CheckResult:
        __tracebackhide__ = True
        details = dict(measurement.details, **({"note": note} if note else {}))
        result = CheckResult(
            suite=suite,
            metric=metric,
            eval_set=eval_set,
            value=measurement.value,
            n=measurement.n,
            threshold=threshold,
            ci=measurement.ci,
            ci_method=measurement.ci_method,
            gate=vcheck_session.settings.gate,
            slice=slice,
            nodeid=request.node.nodeid,
            details=details,
            exact=measurement.exact,
        )
        vcheck_session.record(request.node, result)
        if result.outcome == "fail":
            pytest.fail(result.message(), pytrace=False)
        return result

    return record


@pytest.fixture
def record_artifact(request: pytest.FixtureRequest, vcheck_session: VcheckSession):
    """Record data for one of the report's pictures (see :mod:`vcheck.report.artifacts`).

    Example::

        from vcheck.report import artifacts

        def test_curve(record_artifact, eval_set):
            record_artifact("adversarial", "robust_accuracy_vs_eps", "series",
                            artifacts.series("eps", "robust accuracy", curves),
                            eval_set=eval_set.name)
    """
    from vcheck.report.artifacts import KINDS

    def record(suite: str, name: str, kind: str, data: dict[str, Any], *, eval_set: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
        entry = {
            "suite": suite,
            "name": name,
            "kind": kind,
            "eval_set": eval_set,
            "nodeid": request.node.nodeid,
            "data": data,
        }
        request.node.user_properties.append(
            (_ARTIFACT_PROPERTY, json.dumps(entry, allow_nan=False))
        )

    return record
