"""The product's suites: activate vcheck before collection, so a bad --model, profile or data
path stops the run with a usage error (exit 4) before any test; once collected, start the
soundness suite's verifiers in the background, so they run while the other suites do."""

import pytest

from vcheck.plugin import activate, session_of


def pytest_configure(config: pytest.Config) -> None:
    activate(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    from vcheck.soundness.pool import start_session_pool

    start_session_pool(session_of(session.config), session.items)
