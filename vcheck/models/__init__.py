"""Models: resolve a ``--model`` string, load it, describe it.

Public names: ModelCfg, ModelUnderTest, ModelRef, resolve_model, list_models, ZOO,
DEFAULT_MODEL.
"""

from vcheck.models.base import ModelCfg, ModelUnderTest
from vcheck.models.resolve import ModelRef, list_models, resolve_model
from vcheck.models.zoo import DEFAULT_MODEL, ZOO

__all__ = [
    "DEFAULT_MODEL",
    "ZOO",
    "ModelCfg",
    "ModelRef",
    "ModelUnderTest",
    "list_models",
    "resolve_model",
]
