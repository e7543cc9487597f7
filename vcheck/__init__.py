"""vcheck: pytest-style release gates for image classifiers.

Public names: ModelCfg, ModelUnderTest, resolve_model, list_models, EvalSet, Predictions,
get_predictions, CheckResult, Threshold, VcheckConfig, VcheckError and its subclasses.
"""

__version__ = "0.1.0"

from vcheck.checks import CheckResult, Threshold
from vcheck.config import VcheckConfig
from vcheck.data.evalset import EvalSet
from vcheck.errors import (
    CorruptArtefactError,
    InvalidArgument,
    MissingArtefactError,
    UnknownNameError,
    VcheckError,
    VcheckWarning,
)
from vcheck.models import ModelCfg, ModelUnderTest, list_models, resolve_model
from vcheck.predictions import Predictions, get_predictions

__all__ = [
    "CheckResult",
    "CorruptArtefactError",
    "EvalSet",
    "InvalidArgument",
    "MissingArtefactError",
    "ModelCfg",
    "ModelUnderTest",
    "Predictions",
    "Threshold",
    "UnknownNameError",
    "VcheckConfig",
    "VcheckError",
    "VcheckWarning",
    "__version__",
    "get_predictions",
    "list_models",
    "resolve_model",
]
