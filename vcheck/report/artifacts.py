"""What a suite records for the report's pictures, beside its checks: small, JSON-ready data.

A suite calls the ``record_artifact`` fixture with one of these kinds; the HTML report draws
it and metrics.json keeps it (deterministic, so two equal runs still write equal bytes):

- ``series``: curves, e.g. robust accuracy against epsilon, one series per threat model;
- ``bars``: one value per group with an optional interval, e.g. per-group accuracy;
- ``table``: rows of cells, e.g. errors by category and severity;
- ``images``: a few small PNG images with captions, e.g. adversarial examples.

The constructors below validate shapes, so a suite cannot record what the report cannot draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

KINDS = ("series", "bars", "table", "images")
MAX_IMAGE_SIDE = 96  # thumbnails: a report with 50 examples stays well under a megabyte


def _floats(values: Sequence[float] | None, n: int, name: str) -> list[float | None] | None:
    if values is None:
        return None
    out = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values, expected {n}")
    return out


def series(
    x_label: str,
    y_label: str,
    curves: Sequence[dict[str, Any]],
    *,
    y_range: tuple[float, float] | None = (0.0, 1.0),
) -> dict[str, Any]:
    """Curves ``{"label", "x", "y"}`` with optional ``"low"``/``"high"`` interval bands."""
    out = []
    for c in curves:
        n = len(c["x"])
        out.append(
            {
                "label": str(c["label"]),
                "x": _floats(c["x"], n, "x"),
                "y": _floats(c["y"], n, "y"),
                "low": _floats(c.get("low"), n, "low"),
                "high": _floats(c.get("high"), n, "high"),
            }
        )
    return {
        "x_label": x_label,
        "y_label": y_label,
        "y_range": list(y_range) if y_range else None,
        "series": out,
    }


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    value_label: str,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    n: Sequence[int] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One bar per label, with an optional interval and sample count each."""
    k = len(labels)
    return {
        "labels": [str(x) for x in labels],
        "values": _floats(values, k, "values"),
        "low": _floats(low, k, "low"),
        "high": _floats(high, k, "high"),
        "n": None if n is None else [int(v) for v in n],
        "value_label": value_label,
        "note": note,
    }


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    cols = [str(c) for c in columns]
    for row in rows:
        if len(row) != len(cols):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(cols)}")
    return {"columns": cols, "rows": [[_cell(v) for v in row] for row in rows]}


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value if isinstance(value, int | str | bool) or value is None else str(value)


def png_base64(image: Any) -> str:
    """A float [0, 1] image, (C, H, W) or (H, W), as base64 PNG (downscaled to a thumbnail)."""
    from PIL import Image

    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, np.float64)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    pixels = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(pixels)
    if max(im.size) > MAX_IMAGE_SIDE:
        im.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    elif max(im.size) < 56:  # tiny images (28x28) are scaled up without smoothing
        factor = 56 // max(im.size) + 1
        im = im.resize((im.size[0] * factor, im.size[1] * factor), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def images(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Images ``{"image": tensor or array in [0, 1], "caption": str}`` (plus any extra
    JSON-ready fields, e.g. ``"true"``, ``"predicted"``) as PNG thumbnails."""
    out = []
    for item in items:
        extra = {k: _cell(v) for k, v in item.items() if k not in ("image", "caption")}
        out.append({"png": png_base64(item["image"]), "caption": str(item["caption"]), **extra})
    return {"items": out}
