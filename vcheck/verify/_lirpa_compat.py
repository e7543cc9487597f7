"""Import auto_LiRPA 0.3 (2022, the only PyPI release) on numpy 2 and torch 2.14.

Each fix below is applied only where its feature is missing, so nothing is touched elsewhere:

- ``numpy.lib.arraysetops`` (private since numpy 2): auto_LiRPA imports ``isin`` from it; we
  register a module of that name holding ``numpy.isin``.
- ``torch.onnx.symbolic_helper._set_opset_version`` (gone with the TorchScript exporter's move):
  the graph parser calls it; we restore it as the setter of ``GLOBALS.export_onnx_opset_version``.
- ``torch._C.Node.__getitem__`` (gone): the parser reads attributes as ``node[name]``; we map it
  to the typed accessor that ``node.kindOf(name)`` names (``f``, ``i``, ``t``, ``is`` ...).
- ``clamp``'s gradient at its bounds is now 0, not 1 (pytorch/pytorch#184572). ReLU slopes
  start at exactly 0 or 1, so alpha-CROWN never moved and returned CROWN's bounds. We give
  ReLU's slope masking a clamp that passes the gradient at 0 and 1; values are unchanged.
- ``nn.Module._named_members`` gained ``remove_duplicate``; BoundedModule's override rejects it,
  so CROWN through a product of perturbed values (x * sigmoid(x), attention) raised TypeError.

Importing auto_LiRPA also sets ``warnings.simplefilter("once")`` and a stdout handler on the
root logger; both are undone, and its torch.jit deprecation warnings are dropped. Its raised
recursion limit (10**6, for its recursive graph walks) is kept.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
import types
import warnings

import numpy
import torch

INSTALL_COMMAND = "python -m pip install --no-deps auto-lirpa==0.3 appdirs tqdm"


def _patch_numpy_arraysetops() -> bool:
    name = "numpy.lib.arraysetops"
    if name in sys.modules or importlib.util.find_spec(name) is not None:
        return False
    sys.modules[name] = shim = types.ModuleType(name)
    shim.isin = numpy.isin
    return True


def _patch_set_opset_version() -> bool:
    helper = importlib.import_module("torch.onnx.symbolic_helper")  # not torch.onnx's attribute
    if hasattr(helper, "_set_opset_version"):
        return False
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    helper._set_opset_version = lambda opset: setattr(GLOBALS, "export_onnx_opset_version", opset)
    return True


def _patch_node_getitem() -> bool:
    if hasattr(torch._C.Node, "__getitem__"):
        return False
    torch._C.Node.__getitem__ = lambda node, name: getattr(node, node.kindOf(name))(name)
    return True


def _clamp_keeps_boundary_gradient() -> bool:
    x = torch.zeros(1, requires_grad=True)
    return torch.autograd.grad(x.clamp(0.0, 1.0).sum(), x)[0].item() == 1.0


def _patch_relu_slope_clamp(relu: type) -> bool:
    current = getattr(relu.__dict__.get("_relu_mask_alpha"), "__func__", None)
    if _clamp_keeps_boundary_gradient() or current in (None, _mask_slopes):
        return False
    relu._relu_mask_alpha = staticmethod(_mask_slopes)
    return True


def _mask_slopes(
    lower: torch.Tensor, upper: torch.Tensor, *slopes: torch.Tensor | None
) -> tuple[torch.Tensor | None, ...]:
    """ReLU lower-relaxation slopes (for lA, uA): 1 if active, 0 if inactive, else the slope."""
    active = (lower >= 0).to(lower.dtype)
    inactive = upper <= 0
    unstable = (1.0 - active) * (1.0 - inactive.to(upper.dtype))
    # torch.where, unlike clamp, passes the gradient of slopes lying exactly on 0 or 1.
    clamp = [
        None if s is None else torch.where((s >= 0) & (s <= 1), s, s.clamp(0, 1)) for s in slopes
    ]
    return (*(None if s is None else s * unstable + active for s in clamp), inactive.all())


def _patch_named_members(bounded_module: type) -> bool:
    wanted = inspect.signature(torch.nn.Module._named_members).parameters
    has = inspect.signature(bounded_module._named_members).parameters
    if "remove_duplicate" not in wanted or "remove_duplicate" in has:
        return False
    original = bounded_module._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix, recurse)  # it always removes duplicates

    bounded_module._named_members = _named_members
    return True


_IMPORTED: list[types.ModuleType] = []  # the patched module, once imported


def import_auto_lirpa() -> types.ModuleType:
    """Return the ``auto_LiRPA`` module, patching this environment first where it needs it."""
    if importlib.util.find_spec("auto_LiRPA") is None:
        raise ImportError(f"auto_LiRPA is not installed; install it with: {INSTALL_COMMAND}")
    if _IMPORTED:  # called before every bound computation: patch once
        return _IMPORTED[0]
    _patch_numpy_arraysetops()
    _patch_set_opset_version()
    _patch_node_getitem()
    root_handlers = list(logging.getLogger().handlers)
    # auto_LiRPA imports torch.utils.cpp_extension, which logs "No CUDA runtime is found" on a
    # CPU machine: a line on the user's terminal that says nothing about their run.
    extension_log = logging.getLogger("torch.utils.cpp_extension")
    extension_level = extension_log.level
    extension_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True):
            module = importlib.import_module("auto_LiRPA")
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"auto_LiRPA needs {exc.name!r}, which is missing; install with: {INSTALL_COMMAND}"
        ) from exc
    finally:
        extension_log.setLevel(extension_level)
        for handler in set(logging.getLogger().handlers) - set(root_handlers):
            logging.getLogger().removeHandler(handler)
    _patch_relu_slope_clamp(importlib.import_module("auto_LiRPA.operators").BoundRelu)
    _patch_named_members(module.BoundedModule)
    _IMPORTED.append(module)
    return module
