"""The report's pictures, drawn with matplotlib as inline SVG (no files, no requests).

Each function takes the JSON-ready data of one artifact kind (see
:mod:`vcheck.report.artifacts`) or of a check's details and returns an ``<svg>`` element.
Text stays text (``svg.fonttype = none``: small, crisp, searchable), and the output is
deterministic: no date in the metadata, and element ids salted with the figure's own key so
that many figures can share one page without id clashes.

Public names: :func:`series_svg`, :func:`bars_svg`, :func:`reliability_svg`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

_WIDTH, _HEIGHT = 5.6, 3.0  # inches; at 72 dpi in SVG: 403 x 216 CSS pixels
_PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#6e7781")
_RC = {
    "svg.fonttype": "none",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d8dce4",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#57606a",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def _new_figure(height: float = _HEIGHT, left: float = 0.75, right: float = 0.2):
    """A figure with fixed margins in inches (constrained layout costs 3x the drawing)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, height))
    fig.subplots_adjust(
        left=left / _WIDTH,
        right=1 - right / _WIDTH,
        bottom=0.5 / height,
        top=1 - 0.32 / height,
    )
    return fig


def _to_svg(fig, key: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": key}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # Sized by CSS (it scales down on narrow screens), not by the SVG's own width and height.
    return re.sub(
        r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', r'<svg \1class="plot"', text, count=1
    )


def _finite(values: Sequence[float | None] | None) -> list[float]:
    return [math.nan if v is None else float(v) for v in values or ()]


def series_svg(data: dict[str, Any], title: str, key: str) -> str:
    """Curves against x (e.g. robust accuracy vs epsilon), interval bands shaded."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _new_figure()
        ax = fig.add_subplot()
        for i, curve in enumerate(data["series"]):
            color = _PALETTE[i % len(_PALETTE)]
            x, y = _finite(curve["x"]), _finite(curve["y"])
            ax.plot(x, y, marker="o", markersize=3.5, color=color, label=curve["label"])
            if curve.get("low") is not None and curve.get("high") is not None:
                ax.fill_between(
                    x, _finite(curve["low"]), _finite(curve["high"]), color=color, alpha=0.15
                )
        if data.get("y_range"):
            low, high = data["y_range"]
            pad = 0.03 * (high - low)
            ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel(data["x_label"])
        ax.set_ylabel(data["y_label"])
        ax.set_title(title, loc="left")
        if len(data["series"]) > 1:
            ax.legend(loc="best")
        return _to_svg(fig, key)


def bars_svg(data: dict[str, Any], title: str, key: str, highlight: Sequence[str] = ()) -> str:
    """Horizontal bars, one per label, with interval whiskers and n in the label."""
    import matplotlib
    import numpy as np

    labels = list(data["labels"])
    if data.get("n") is not None:
        labels = [f"{lab} (n={n})" for lab, n in zip(labels, data["n"], strict=True)]
    values = np.array(_finite(data["values"]))
    with matplotlib.rc_context(_RC):
        longest = max((len(lab) for lab in labels), default=1)
        fig = _new_figure(
            height=max(1.6, 0.9 + 0.22 * len(labels)), left=min(2.6, 0.2 + 0.062 * longest)
        )
        ax = fig.add_subplot()
        y = np.arange(len(labels))[::-1]
        colors = [_PALETTE[1] if lab in highlight else _PALETTE[0] for lab in data["labels"]]
        xerr = None
        if data.get("low") is not None and data.get("high") is not None:
            low, high = np.array(_finite(data["low"])), np.array(_finite(data["high"]))
            xerr = np.nan_to_num(np.vstack([values - low, high - values]).clip(min=0))
        ax.barh(y, np.nan_to_num(values), color=colors, alpha=0.85, height=0.7)
        if xerr is not None:
            ax.errorbar(values, y, xerr=xerr, fmt="none", ecolor="#1d2330", elinewidth=1,
                        capsize=2.5)  # fmt: skip
        ax.set_yticks(y, labels)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(data["value_label"])
        finite = values[np.isfinite(values)]
        if len(finite) and finite.min() >= 0 and finite.max() <= 1:
            ax.set_xlim(0, 1)
        ax.set_title(title, loc="left")
        return _to_svg(fig, key)


def reliability_svg(bins: dict[str, Any], title: str, key: str) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, bins sized by
    how many samples fall in them."""
    import matplotlib
    import numpy as np

    count = np.asarray(bins["count"], dtype=float)
    k = len(count)
    edges = np.linspace(0, 1, k + 1)
    acc = np.array(_finite(bins["accuracy"]))
    conf = np.array(_finite(bins["confidence"]))
    with matplotlib.rc_context(_RC):
        fig = _new_figure(right=0.75)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle="--", color="#6e7781", linewidth=1, label="perfect")
        present = count > 0
        ax.bar(edges[:-1][present], acc[present], width=1 / k, align="edge", color=_PALETTE[0],
               alpha=0.8, edgecolor="white", label="accuracy per bin")  # fmt: skip
        ax.plot(conf[present], acc[present], "o", color=_PALETTE[1], markersize=3,
                label="mean confidence")  # fmt: skip
        share = count / count.sum() if count.sum() else count
        ax2 = ax.twinx()
        ax2.step(edges[:-1], share, where="post", color="#8250df", linewidth=0.8, alpha=0.6)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("share of samples", color="#8250df")
        ax2.grid(False)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(title, loc="left")
        ax.legend(loc="upper left")
        return _to_svg(fig, key)
