"""Image properties that slice any eval set without metadata (Wake Vision style).

Wake Vision (Banbury et al., 2024) slices its test set by lighting, the mean grayscale value
of the image on 0-255 (dark < 85, normal 85-170, bright >= 170), and by distance, the area
of the person's bounding box as a fraction of the image (far < 0.1, mid 0.1-0.6, near >= 0.6).
Without boxes, the object here is the image's foreground: pixels whose gray level differs
from the background (the median of the image's outermost ring of pixels) by more than
``threshold``. On Fashion-MNIST (black background, centred garment) that is exactly the
garment; on natural photographs it is a rough proxy (whatever differs from the border).

Measures (one value per image):

- ``lighting``: mean gray level, 0-255 (ITU-R 601 luma for RGB, as Wake Vision's
  ``rgb_to_grayscale``);
- ``object_size``: foreground pixels as a fraction of the image, 0-1;
- ``object_brightness``: mean gray level of the foreground pixels, 0-255 (NaN when an image
  has no foreground).

Public names: MEASURES, image_statistics, assign_bins.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("lighting", "object_size", "object_brightness")
_LUMA = np.array([0.299, 0.587, 0.114])


def _gray(images: np.ndarray) -> np.ndarray:
    """(N, H, W) gray levels on 0-255 of (N, C, H, W) images in [0, 1]."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"Expected images of shape (N, 1 or 3, H, W), but got {images.shape}")
    x = images.astype(np.float64, copy=False)
    gray = x[:, 0] if x.shape[1] == 1 else np.tensordot(_LUMA, x, axes=([0], [1]))
    return gray * 255.0


def image_statistics(images: np.ndarray, threshold: float = 0.1) -> dict[str, np.ndarray]:
    """The :data:`MEASURES` of every image.

    Args:
        images: (N, C, H, W) floats in [0, 1], C = 1 or 3.
        threshold: foreground = gray differs from the background by more than this
            (fraction of the 0-255 range).

    >>> img = np.zeros((1, 1, 4, 4)); img[0, 0, 1:3, 1:3] = 1.0
    >>> {k: v.round(3).tolist() for k, v in image_statistics(img).items()}
    {'lighting': [63.75], 'object_size': [0.25], 'object_brightness': [255.0]}
    """
    gray = _gray(np.asarray(images))
    n, h, w = gray.shape
    ring = np.concatenate(
        [gray[:, 0, :], gray[:, -1, :], gray[:, 1:-1, 0], gray[:, 1:-1, -1]], axis=1
    )
    background = np.median(ring, axis=1)
    foreground = np.abs(gray - background[:, None, None]) > threshold * 255.0
    area = foreground.reshape(n, -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        brightness = (gray * foreground).reshape(n, -1).sum(axis=1) / area
    return {
        "lighting": gray.reshape(n, -1).mean(axis=1),
        "object_size": area / (h * w),
        "object_brightness": np.where(area > 0, brightness, np.nan),
    }


def assign_bins(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bin index of each value: 0 below ``edges[0]``, i for ``edges[i-1] <= v < edges[i]``,
    ``len(edges)`` at or above the last edge; -1 for NaN.

    >>> assign_bins(np.array([10.0, 85.0, 169.9, 170.0, np.nan]), (85, 170)).tolist()
    [0, 1, 1, 2, -1]
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.where(np.isnan(values), -1, codes)
