"""Reading weight files safely (``weights_only=True``) with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcheck.errors import CorruptArtefactError, MissingArtefactError


def read_checkpoint(path: Path) -> Any:
    """Load a weights file with ``torch.load(weights_only=True)``; never unpickles code."""
    if not path.is_file():
        raise MissingArtefactError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":  # timm's hub files; safetensors comes with timm
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CorruptArtefactError(
            f"cannot read weights file {path}: {_load_error_reason(exc, path)}. "
            "Pass a state dict saved with torch.save(model.state_dict(), PATH)."
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CorruptArtefactError(
            f"{path} is a .safetensors file, which needs the safetensors package: "
            "pip install safetensors (it comes with vcheck[timm])"
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CorruptArtefactError(
            f"cannot read weights file {path}: {str(exc).splitlines()[0] or type(exc).__name__}"
        ) from None


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def _load_error_reason(exc: Exception, path: Path) -> str:
    """Why torch.load refused ``path``, in words a user can act on.

    torch's own messages lead with advice to retry with ``weights_only=False`` (arbitrary code
    execution), which a one-line message must not pass on, and a foreign file often surfaces
    as a bare pickle opcode (``KeyError: 101``); the file's first bytes say more.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if not head:
        return "the file is empty"
    text = str(exc)
    if head.startswith(_ZIP_MAGIC) and "zip archive" in text:
        return "it is a damaged or truncated torch zip archive (copy it again)"
    if not head.startswith((_ZIP_MAGIC, _PICKLE_PROTO)):
        return f"it is not a file written by torch.save (it starts with {head[:12]!r})"
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].strip().splitlines()[0]
        if "Unsupported global" in detail:
            name = detail.split("GLOBAL", 1)[-1].split()[0] if "GLOBAL" in detail else "?"
            return (
                f"it stores a pickled Python object ({name}), which vcheck does not unpickle "
                "(that could run code), not a state dict"
            )
        return f"torch.load(weights_only=True) refused it ({detail})"
    return _first_sentence(text) or type(exc).__name__


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of ``text``, shortened at a word boundary."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first.split(". ", 1)[0].rstrip(".")
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return first


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or the common wrappers ({"state_dict": ...}, {"model": ...})."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptArtefactError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors)."
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_weights(net: nn.Module, path: Path, arch: str) -> None:
    """Load ``path`` into ``net`` strictly; a mismatch names the first differing keys/shapes."""
    state = extract_state_dict(read_checkpoint(path), path)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CorruptArtefactError(
            f"weights {path} do not fit architecture {arch!r}: {'; '.join(parts)}. "
            "Pass the --model that these weights were trained for."
        )
    net.load_state_dict(state, strict=True)
