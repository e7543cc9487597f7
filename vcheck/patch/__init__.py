"""Adversarial patches: a REAP-style differentiable renderer and the attacks optimised through it.

Public names: :class:`PatchRenderer`, :func:`patch_shape`, :class:`UniversalPatchAttack`,
:class:`PerImagePatchAttack`, :func:`noise_patches`, :func:`predict_patched`.
"""

from vcheck.patch.attacks import (
    PerImagePatchAttack,
    UniversalPatchAttack,
    noise_patches,
    predict_patched,
)
from vcheck.patch.render import PatchRenderer, patch_shape

__all__ = [
    "PatchRenderer",
    "PerImagePatchAttack",
    "UniversalPatchAttack",
    "noise_patches",
    "patch_shape",
    "predict_patched",
]
