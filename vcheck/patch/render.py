"""Differentiable patch rendering in the style of REAP (Hingun et al., ICCV 2023).

A patch is put on an image the way a printed sticker ends up in a photograph, in three steps
that are differentiable with respect to the patch pixels, batched, and work for any image
size and channel count:

1. lighting: ``patch' = clamp(alpha * patch + beta, 0, 1)`` with ``beta`` the 20th percentile
   and ``alpha`` the 80th minus the 20th percentile of the image pixels the patch covers, so
   a patch on a dark region is dark and one on a washed-out region has little contrast;
2. geometry: a random perspective warp (each corner of the patch moved by up to
   ``distortion`` of the patch side), as a homography sampled with ``grid_sample``;
3. compositing: ``x' = (1 - m) * x + m * warped_patch`` with the warped mask ``m``.

Every random choice (location, corner offsets) comes from a :class:`torch.Generator`, so a
seed reproduces a draw exactly. With no distortion and no lighting a patch lands on the image
pixel for pixel (the warp is skipped, not approximated).

Public names: :data:`LOCATIONS`, :data:`LIGHTING`, :class:`Draw`, :class:`Rendered`,
:class:`PatchRenderer`, :func:`patch_shape`, :func:`place`, :func:`lighting_params`,
:func:`homography`, :func:`warp`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

# Named positions of the patch's top-left corner; "random" draws one per image and draw.
LOCATIONS = (
    "center",
    "top",
    "bottom",
    "left",
    "right",
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "random",
)
# Where REAP's relighting reads its percentiles: "covered", the pixels under the patch;
# "image", the whole image (REAP's whole sign: for a classifier, the image is the object);
# "none": the patch as printed, no relighting.
LIGHTING = ("covered", "image", "none")
LOW_PERCENTILE, HIGH_PERCENTILE = 0.2, 0.8


def patch_shape(area: float, height: int, width: int) -> tuple[int, int]:
    """(h, w) of the square patch covering ``area`` of an ``height`` x ``width`` image.

    >>> patch_shape(0.1, 28, 28)
    (9, 9)
    """
    if not 0 < area <= 1:
        raise ValueError(f"area={area!r}: expected a fraction of the image in (0, 1]")
    side = max(1, min(height, width, round(math.sqrt(area * height * width))))
    return side, side


class Draw(NamedTuple):
    """One random rendering per image: where the patch goes and how its corners move.

    ``top``/``left``: (N,) int64 pixel position of the patch's top-left corner;
    ``offsets``: (N, 4, 2) corner displacements (x, y) in units of the patch's width/height,
    corners in the order top-left, top-right, bottom-right, bottom-left.
    """

    top: torch.Tensor
    left: torch.Tensor
    offsets: torch.Tensor


class Rendered(NamedTuple):
    """The patched images (N, C, H, W), the mask m (N, 1, H, W) and the lighting (N,)."""

    images: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor


def place(patches: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int):
    """Canvas (N, C, H, W) holding each patch (N, C, h, w) at (top, left), zero elsewhere.

    Exact copies, differentiable in ``patches``; one ``pad`` when every patch goes to the same
    place, an indexed write otherwise.
    """
    n, c, h, w = patches.shape
    if n == 0 or (bool((top == top[0]).all()) and bool((left == left[0]).all())):
        t, lft = (int(top[0]), int(left[0])) if n else (0, 0)
        return F.pad(patches, (lft, width - w - lft, t, height - h - t))
    dev = patches.device
    rows = top.to(dev)[:, None] + torch.arange(h, device=dev)  # (N, h)
    cols = left.to(dev)[:, None] + torch.arange(w, device=dev)  # (N, w)
    b = torch.arange(n, device=dev)[:, None, None].expand(n, h, w)
    r = rows[:, :, None].expand(n, h, w)
    k = cols[:, None, :].expand(n, h, w)
    canvas = patches.new_zeros(n, height, width, c).index_put(
        (b, r, k), patches.permute(0, 2, 3, 1)
    )
    return canvas.permute(0, 3, 1, 2)


def crop(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int):
    """The (N, C, h, w) window of each image at (top, left): the inverse of :func:`place`."""
    n = images.shape[0]
    if n == 0 or (bool((top == top[0]).all()) and bool((left == left[0]).all())):
        t, lft = (int(top[0]), int(left[0])) if n else (0, 0)
        return images[:, :, t : t + h, lft : lft + w]
    dev = images.device
    rows = (top.to(dev)[:, None] + torch.arange(h, device=dev))[:, :, None]
    cols = (left.to(dev)[:, None] + torch.arange(w, device=dev))[:, None, :]
    b = torch.arange(n, device=dev)[:, None, None]
    return images.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) homographies mapping each of the four points ``src`` (N, 4, 2) onto ``dst``.

    Solved in float64 (the 8x8 system of the direct linear transform), returned in
    ``src``'s dtype.
    """
    s, d = src.double(), dst.double()
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (N, 8, 8)
    rhs = torch.cat([u, v], dim=1)  # (N, 8)
    h = torch.linalg.solve(a, rhs)
    return torch.cat([h, torch.ones_like(h[:, :1])], dim=1).view(-1, 3, 3).to(src.dtype)


def warp(images: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Warp (N, C, H, W) so that output pixel p shows input point ``inverse @ p``
    (pixel coordinates, centres at k + 0.5); bilinear, zero outside the input."""
    _, _, height, width = images.shape
    dev, dtype = images.device, images.dtype
    hm = inverse.to(dev, dtype)[:, :, :, None, None]  # (N, 3, 3, 1, 1)
    ys = (torch.arange(height, device=dev, dtype=dtype) + 0.5)[:, None]
    xs = torch.arange(width, device=dev, dtype=dtype) + 0.5
    sx, sy, sw = (hm[:, i, 0] * xs + hm[:, i, 1] * ys + hm[:, i, 2] for i in range(3))
    sw = torch.where(sw.abs() < 1e-8, torch.full_like(sw, 1e-8), sw)
    grid = torch.stack([2 * sx / (sw * width) - 1, 2 * sy / (sw * height) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def lighting_params(images: torch.Tensor, covered: torch.Tensor | None = None):
    """REAP's relighting of a patch from the pixels it covers, per image.

    Args:
        images: (N, C, H, W) in [0, 1].
        covered: (N, 1, H, W) bool, the pixels under the patch; None: the whole image.

    Returns:
        ``(alpha, beta)``, each (N,): ``beta`` = 20th percentile, ``alpha`` = 80th - 20th
        percentile of the covered pixels (all channels; linear interpolation, as numpy's
        default). An image with no covered pixel gets ``alpha = 1, beta = 0`` (nothing is
        pasted on it anyway).
    """
    n = images.shape[0]
    values = images.detach().reshape(n, -1)
    if covered is None:
        count = torch.full((n,), values.shape[1], device=images.device)
    else:
        keep = covered.expand_as(images).reshape(n, -1)
        values = values.masked_fill(~keep, float("inf"))  # sorted past the covered pixels
        count = keep.sum(1)
    ordered = values.sort(dim=1).values
    out = []
    for q in (LOW_PERCENTILE, HIGH_PERCENTILE):
        pos = q * (count - 1).clamp_min(0).to(images.dtype)
        lo = pos.floor().long()
        hi = pos.ceil().long()
        a = ordered.gather(1, lo[:, None])[:, 0]
        b = ordered.gather(1, hi[:, None])[:, 0]
        out.append(a + (pos - lo) * (b - a))
    low, high = out
    empty = count == 0
    alpha = torch.where(empty, torch.ones_like(low), high - low)
    beta = torch.where(empty, torch.zeros_like(low), low)
    return alpha, beta


class PatchRenderer:
    """Renders patches onto images: lighting, random perspective warp, compositing.

    Settings here, data in the call (foolbox style), so one renderer is the threat model of
    one patch size and location, used for optimising and for evaluating.

    Args:
        patch_size: (h, w) of the patch in pixels (see :func:`patch_shape`).
        location: one of :data:`LOCATIONS`; "random" draws a position per image and draw.
        distortion: largest corner displacement, as a fraction of the patch side (0: none).
        lighting: one of :data:`LIGHTING`.

    Example:
        >>> r = PatchRenderer((9, 9), location="center", distortion=0.1)
        >>> x = torch.rand(4, 1, 28, 28)
        >>> out = r(x, torch.rand(1, 9, 9), generator=torch.Generator().manual_seed(0))
        >>> out.images.shape, out.mask.shape
        (torch.Size([4, 1, 28, 28]), torch.Size([4, 1, 28, 28]))
    """

    def __init__(
        self,
        patch_size: tuple[int, int],
        *,
        location: str = "center",
        distortion: float = 0.0,
        lighting: str = "covered",
    ) -> None:
        if location not in LOCATIONS:
            raise ValueError(f"location={location!r}: expected one of {', '.join(LOCATIONS)}")
        if lighting not in LIGHTING:
            raise ValueError(f"lighting={lighting!r}: expected one of {', '.join(LIGHTING)}")
        if not 0 <= distortion < 0.5:
            raise ValueError(f"distortion={distortion!r}: expected a fraction in [0, 0.5)")
        h, w = patch_size
        if h < 1 or w < 1:
            raise ValueError(f"patch_size={patch_size!r}: expected positive sides")
        self.patch_size = (int(h), int(w))
        self.location = location
        self.distortion = float(distortion)
        self.lighting = lighting

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def position(self, height: int, width: int) -> tuple[int, int]:
        """(top, left) of a named location on a ``height`` x ``width`` image."""
        h, w = self.patch_size
        if h > height or w > width:
            raise ValueError(f"a {h}x{w} patch does not fit a {height}x{width} image")
        rows = {"top": 0, "bottom": height - h}
        cols = {"left": 0, "right": width - w}
        mid_r, mid_c = (height - h) // 2, (width - w) // 2
        parts = self.location.split("_")
        top = next((rows[p] for p in parts if p in rows), mid_r)
        left = next((cols[p] for p in parts if p in cols), mid_c)
        return top, left

    def draw(self, n: int, height: int, width: int, generator: torch.Generator | None) -> Draw:
        """The random part of ``n`` renderings (on the CPU, from ``generator``)."""
        h, w = self.patch_size
        if self.location == "random":
            if h > height or w > width:
                raise ValueError(f"a {h}x{w} patch does not fit a {height}x{width} image")
            top = torch.randint(0, height - h + 1, (n,), generator=generator)
            left = torch.randint(0, width - w + 1, (n,), generator=generator)
        else:
            t, lft = self.position(height, width)
            top = torch.full((n,), t, dtype=torch.int64)
            left = torch.full((n,), lft, dtype=torch.int64)
        if self.distortion > 0:
            offsets = (torch.rand(n, 4, 2, generator=generator) * 2 - 1) * self.distortion
        else:
            offsets = torch.zeros(n, 4, 2)
        return Draw(top, left, offsets)

    def __call__(
        self,
        images: torch.Tensor,
        patches: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        draw: Draw | None = None,
    ) -> Rendered:
        """Render ``patches`` onto ``images``.

        Args:
            images: (N, C, H, W) in [0, 1].
            patches: (C, h, w) or (1, C, h, w) for one patch on every image, or
                (N, C, h, w) for one patch per image; values in [0, 1].
            generator: source of the random draw (ignored when ``draw`` is given).
            draw: a :class:`Draw` to reuse, e.g. to render two patches identically.
        """
        n, c, height, width = images.shape
        if patches.dim() == 3:
            patches = patches[None]
        if patches.shape[1:] != (c, *self.patch_size) or patches.shape[0] not in (1, n):
            raise ValueError(
                f"patches of shape {tuple(patches.shape)} do not fit {n} images with {c} "
                f"channels and a {self.patch_size[0]}x{self.patch_size[1]} patch"
            )
        # Printable colours only; then REAP's clamp(alpha * patch + beta) never clips, as
        # 0 <= beta <= alpha + beta <= 1, and lighting commutes with the (linear) warp.
        patches = patches.to(images.dtype).clamp(0, 1).expand(n, -1, -1, -1)
        if draw is None:
            draw = self.draw(n, height, width, generator)
        dev = images.device
        top, left = draw.top.to(dev), draw.left.to(dev)
        # Work on a window around each patch, wide enough for its warped corners, in the
        # image padded by that margin: the patch sits at (r, r) in every window, so one
        # pad builds all canvases and the warp does not depend on the location.
        r = self.margin
        padded = F.pad(images, (r, r, r, r)) if r else images
        hh, ww = self.patch_size[0] + 2 * r, self.patch_size[1] + 2 * r
        window = crop(padded, top, left, hh, ww)
        ones = torch.ones_like(patches[:, :1])
        canvas = F.pad(torch.cat([patches, ones], dim=1), (r, r, r, r))
        inverse = self._inverse(draw.offsets, r)
        if inverse is not None:
            canvas = warp(canvas, inverse.to(dev, images.dtype))
        # Zero off the patch, the warped canvas is the warped patch already multiplied by the
        # warped mask m: (1 - m) * x + m * warped_patch = (1 - m) * x + canvas.
        canvas, mask = canvas[:, :c], canvas[:, c:]
        if self.lighting == "none":
            alpha, beta = torch.ones(n, device=dev), torch.zeros(n, device=dev)
        else:
            covered = (window, mask >= 0.5) if self.lighting == "covered" else (images, None)
            alpha, beta = lighting_params(*covered)
            canvas = alpha.view(n, 1, 1, 1) * canvas + beta.view(n, 1, 1, 1) * mask
        patched = (1 - mask) * window + canvas
        # Paste the windows back: exact outside them (x * 1 + 0) and inside (x * 0 + window).
        size = (height + 2 * r, width + 2 * r)
        inside = place(torch.ones_like(mask), top, left, *size)
        out = padded * (1 - inside) + place(patched, top, left, *size)
        full_mask = place(mask, top, left, *size)
        if r:
            out = out[:, :, r:-r, r:-r]
            full_mask = full_mask[:, :, r:-r, r:-r]
        return Rendered(out, full_mask, alpha, beta)

    @property
    def margin(self) -> int:
        """Pixels a warped corner can move beyond the patch box (plus one for sampling)."""
        if self.distortion == 0:
            return 0
        return math.ceil(self.distortion * max(self.patch_size)) + 1

    def _inverse(self, offsets: torch.Tensor, r: int) -> torch.Tensor | None:
        """Homographies from window pixels back to the unwarped window; None: no warp."""
        if not bool(offsets.any()):
            return None
        h, w = self.patch_size
        unit = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
        size = torch.tensor([w, h], dtype=torch.float64)
        # About the patch centre, where the map is nearly a translation (w near 1): well
        # conditioned; then shifted to window coordinates.
        corners = (unit - 0.5) * size
        moved = corners + offsets.double() * size
        local = homography(moved, corners.expand_as(moved))
        shift = torch.eye(3, dtype=torch.float64)
        back = torch.eye(3, dtype=torch.float64)
        shift[0, 2], shift[1, 2] = r + w / 2, r + h / 2
        back[0, 2], back[1, 2] = -(r + w / 2), -(r + h / 2)
        return shift @ local @ back
