"""The product's suites: activate vcheck before collection, so a bad --model, profile or data
path stops the run with a usage error (exit 4) before any test; once collected, start the
soundness suite's verifiers in the background, so they run while the other suites do."""

import pytest

from vcheck.plugin import activate, prefer_passive_openmp, session_of

prefer_passive_openmp()  # before anything imports torch


def pytest_configure(config: pytest.Config) -> None:
    activate(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that read background verdicts (alpha-CROWN, branch and bound) run last, in
    their own order: the soundness suite's other work (re-checks, IBP and CROWN, the property
    tests, the model and control checks) then runs while the workers finish, instead of after
    the main process has sat waiting for them."""
    from vcheck.soundness.pool import POOLED

    def waits(item: pytest.Item) -> bool:
        params = getattr(getattr(item, "callspec", None), "params", {})
        return params.get("verifier_spec") in POOLED and "verdicts" in item.fixturenames

    items[:] = [i for i in items if not waits(i)] + [i for i in items if waits(i)]


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    from vcheck.soundness.pool import start_session_pool

    start_session_pool(session_of(session.config), session.items)
