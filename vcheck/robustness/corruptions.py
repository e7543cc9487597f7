"""Common corruptions at five severities, ImageNet-C style (Hendrycks and Dietterich, 2019),
seeded, on float images in [0, 1], NCHW; torchvision.transforms.v2 where it has the op.

Severity parameters follow the published benchmark tables: CIFAR-10-C's for small images
(side <= 64, e.g. Fashion-MNIST), ImageNet-C's for larger ones. Where the benchmark used PIL
or scikit-image, the op here is its torch equivalent:

- brightness adds ``c`` to the HSV value channel (ImageNet-C); for RGB that is a per-pixel
  rescale of the channels by ``min(v + c, 1) / v``, for grey images ``x + c``;
- pixelate box-downsamples (antialiased bilinear) to ``c`` of the side and scales back up
  with nearest-neighbour;
- JPEG goes through PIL, as in the benchmark (torchvision 0.29 deprecates its own codec).

Public names: :data:`CORRUPTIONS`, :data:`SEVERITIES`, :func:`corrupt`, :func:`parameters`.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "brightness",
    "contrast",
    "jpeg",
    "pixelate",
)
SEVERITIES = (1, 2, 3, 4, 5)

_SMALL = {  # CIFAR-10-C
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
_LARGE = {  # ImageNet-C
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "jpeg": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}


def parameters(name: str, side: int) -> tuple[float, ...]:
    """The five severity parameters of corruption ``name`` for images of this side."""
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption={name!r}: expected one of {', '.join(CORRUPTIONS)}")
    return (_SMALL if side <= 64 else _LARGE)[name]


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """``images`` (N, C, H, W) in [0, 1] with corruption ``name`` at ``severity`` (1-5).

    Random corruptions draw from a generator seeded by ``seed``: same input, same seed, same
    output.

    >>> x = torch.full((1, 1, 8, 8), 0.5)
    >>> corrupt(x, "brightness", 5).max().item()
    0.800000011920929
    """
    # torchvision (and the torch._dynamo it imports) loads here, not at start-up: a warm run
    # reads every corruption result from the cache.
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    if severity not in SEVERITIES:
        raise ValueError(f"severity={severity!r}: expected one of {SEVERITIES}")
    x = images.float()
    c = parameters(name, max(x.shape[-2:]))[severity - 1]
    g = torch.Generator(device=x.device).manual_seed(seed)
    if name == "gaussian_noise":
        with torch.random.fork_rng(devices=[]):  # v2's op draws from the global generator
            torch.manual_seed(seed)
            out = F.gaussian_noise(x, mean=0.0, sigma=float(c), clip=True)
    elif name == "shot_noise":
        out = torch.poisson(x * c, generator=g) / c
    elif name == "impulse_noise":  # salt and pepper, per value, as scikit-image's "s&p"
        hit = torch.rand(x.shape, generator=g, device=x.device) < c
        salt = torch.rand(x.shape, generator=g, device=x.device) < 0.5
        out = torch.where(hit, salt.float(), x)
    elif name == "gaussian_blur":
        k = 2 * math.ceil(3 * c) + 1
        out = F.gaussian_blur(x, kernel_size=[k, k], sigma=[float(c), float(c)])
    elif name == "brightness":
        v = x.amax(1, keepdim=True)
        scaled = x * ((v + c).clamp(max=1) / v.clamp_min(1e-12))
        out = torch.where(v > 0, scaled, torch.full_like(x, c))
    elif name == "contrast":
        out = F.adjust_contrast(x, float(c))
    elif name == "jpeg":
        out = _jpeg(x, int(c))
    else:  # pixelate
        h, w = x.shape[-2:]
        small = F.resize(
            x,
            [max(1, int(h * c)), max(1, int(w * c))],
            interpolation=InterpolationMode.BILINEAR,
            antialias=True,
        )
        out = F.resize(small, [h, w], interpolation=InterpolationMode.NEAREST)
    return out.clamp(0, 1)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode each image as JPEG at ``quality`` (PIL, as ImageNet-C)."""
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = np.empty_like(u8)
    for i, img in enumerate(u8):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        back = np.asarray(Image.open(buf))
        out[i] = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
    return torch.from_numpy(out).to(x.device).float() / 255
