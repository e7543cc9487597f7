"""vcheck: pytest-style release gates for image classifiers.

Public names (imported on first use, so that loading the pytest plugin stays cheap):
ModelCfg, ModelUnderTest, resolve_model, list_models, EvalSet, Predictions, get_predictions,
CheckResult, Measurement, Threshold, VcheckConfig, VcheckError and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckResult": "vcheck.checks",
    "Measurement": "vcheck.checks",
    "Threshold": "vcheck.checks",
    "VcheckConfig": "vcheck.config",
    "EvalSet": "vcheck.data.evalset",
    "CorruptArtefactError": "vcheck.errors",
    "InvalidArgument": "vcheck.errors",
    "MissingArtefactError": "vcheck.errors",
    "UnknownNameError": "vcheck.errors",
    "VcheckError": "vcheck.errors",
    "VcheckWarning": "vcheck.errors",
    "ModelCfg": "vcheck.models",
    "ModelUnderTest": "vcheck.models",
    "list_models": "vcheck.models",
    "resolve_model": "vcheck.models",
    "Predictions": "vcheck.predictions",
    "get_predictions": "vcheck.predictions",
}
__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vcheck' has no attribute {name!r}")
