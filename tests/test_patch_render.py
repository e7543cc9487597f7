"""The REAP-style patch renderer: exact placement, lighting, warps, compositing, gradients,
seeded draws, on 1-channel 28x28 and 3-channel 224x224 images alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vcheck.patch.render import (
    LOCATIONS,
    Draw,
    PatchRenderer,
    homography,
    lighting_params,
    patch_shape,
    warp,
)

SHAPES = [(1, 28, 28), (3, 224, 224)]
FIXED = [loc for loc in LOCATIONS if loc != "random"]


def _images(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x224x224"])
@pytest.mark.parametrize("location", FIXED)
def test_identity_transform_leaves_patch_and_image_pixels_exact(shape, location):
    c, height, width = shape
    x = _images(3, shape)
    h, w = patch_shape(0.05, height, width)
    patch = torch.rand(c, h, w, generator=_gen(1))
    r = PatchRenderer((h, w), location=location, distortion=0.0, lighting="none")
    out = r(x, patch, generator=_gen())
    top, left = r.position(height, width)
    region = (slice(None), slice(None), slice(top, top + h), slice(left, left + w))
    assert torch.equal(out.images[region], patch.expand(3, -1, -1, -1))
    outside = torch.ones_like(out.images, dtype=torch.bool)
    outside[region] = False
    assert torch.equal(out.images[outside], x[outside])
    assert torch.equal(out.mask.sum((1, 2, 3)), torch.full((3,), float(h * w)))


def test_named_locations_put_the_patch_where_their_names_say():
    r = lambda loc: PatchRenderer((4, 6), location=loc).position(28, 30)  # noqa: E731
    assert r("top_left") == (0, 0)
    assert r("bottom_right") == (24, 24)
    assert r("center") == (12, 12)
    assert r("top") == (0, 12) and r("left") == (12, 0)
    assert r("top_right") == (0, 24) and r("bottom_left") == (24, 0)


def test_per_image_patches_each_land_on_their_own_image():
    x = torch.zeros(4, 1, 10, 10)
    patches = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 3, 3) / 4
    out = PatchRenderer((3, 3), location="top_left", lighting="none")(x, patches)
    assert out.images[:, 0, 0, 0].tolist() == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x224x224"])
def test_random_location_keeps_the_patch_inside_and_moves_it(shape):
    c, height, width = shape
    h, w = patch_shape(0.1, height, width)
    r = PatchRenderer((h, w), location="random", lighting="none")
    out = r(_images(64, shape), torch.ones(c, h, w), generator=_gen())
    assert torch.equal(out.mask.sum((1, 2, 3)), torch.full((64,), float(h * w)))
    draw = r.draw(64, height, width, _gen())
    assert len(set(zip(draw.top.tolist(), draw.left.tolist(), strict=True))) > 32
    assert int(draw.top.max()) <= height - h and int(draw.left.max()) <= width - w


def test_lighting_is_reaps_percentile_map_of_the_covered_pixels():
    # Covered pixels 0, 1/80, ..., 79/80 (80 of them) with a different background around.
    x = torch.full((1, 1, 12, 12), 0.9)
    values = torch.arange(80.0) / 80
    x[0, 0, 2:10, 1:11] = values.view(8, 10)
    patch = torch.tensor([0.0, 0.5, 1.0, 0.25]).repeat(20).view(1, 8, 10)
    out = PatchRenderer((8, 10), location="center", lighting="covered")(x, patch)
    low, high = np.percentile(values.numpy(), [20, 80])
    assert float(out.beta[0]) == pytest.approx(low, abs=1e-6)
    assert float(out.alpha[0]) == pytest.approx(high - low, abs=1e-6)
    expected = (high - low) * patch.numpy() + low
    np.testing.assert_allclose(out.images[0, :, 2:10, 1:11].numpy(), expected, atol=1e-6)
    # 0 maps to the 20th percentile, 1 to the 80th
    assert float(out.images[0, 0, 2, 1]) == pytest.approx(low, abs=1e-6)
    assert float(out.images[0, 0, 2, 3]) == pytest.approx(high, abs=1e-6)


def test_lighting_of_the_whole_image_and_of_a_dark_region():
    x = torch.zeros(2, 3, 20, 20)
    x[1] = torch.linspace(0, 1, 1200).view(3, 20, 20)
    patch = torch.ones(3, 4, 4)
    covered = PatchRenderer((4, 4), location="top_left", lighting="covered")(x, patch)
    # A patch on a black region is rendered black, whatever its pixels.
    assert float(covered.images[0].abs().max()) == 0.0
    image = PatchRenderer((4, 4), location="top_left", lighting="image")(x, patch)
    low, high = np.percentile(x[1].numpy(), [20, 80])
    assert float(image.beta[1]) == pytest.approx(low, abs=1e-6)
    assert float(image.alpha[1]) == pytest.approx(high - low, abs=1e-6)
    assert torch.allclose(image.images[1, :, :4, :4], torch.tensor(high, dtype=torch.float32))


def test_lighting_params_without_covered_pixels_leave_the_patch_as_is():
    alpha, beta = lighting_params(torch.rand(2, 1, 5, 5), torch.zeros(2, 1, 5, 5, dtype=bool))
    assert alpha.tolist() == [1.0, 1.0] and beta.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x224x224"])
def test_warped_masks_composite_the_patch_over_the_image(shape):
    c, height, width = shape
    h, w = patch_shape(0.08, height, width)
    x = _images(8, shape)
    value = 0.3
    r = PatchRenderer((h, w), location="random", distortion=0.25, lighting="none")
    out = r(x, torch.full((c, h, w), value), generator=_gen(3))
    m = out.mask
    assert float(m.min()) >= 0 and float(m.max()) <= 1 + 1e-6
    assert bool(((m > 0) & (m < 1)).any())  # a real warp: soft edges
    # A uniform patch: x' = (1 - m) x + m * value at every pixel, edges included.
    torch.testing.assert_close(out.images, (1 - m) * x + m * value, atol=1e-6, rtol=0)
    untouched = (m == 0).expand_as(x)
    assert torch.equal(out.images[untouched], x[untouched])
    covered = (m == 1).expand_as(x)
    assert torch.allclose(out.images[covered], torch.tensor(value), atol=1e-6)


def test_warp_stays_near_the_patch_box():
    r = PatchRenderer((8, 8), location="center", distortion=0.2, lighting="none")
    out = r(torch.zeros(16, 1, 28, 28), torch.ones(1, 8, 8), generator=_gen())
    top, left = r.position(28, 28)
    reach = int(np.ceil(0.2 * 8)) + 1
    far = torch.ones(28, 28, dtype=torch.bool)
    far[top - reach : top + 8 + reach, left - reach : left + 8 + reach] = False
    assert float(out.mask[:, 0, far].abs().max()) == 0.0
    area = out.mask.sum((1, 2, 3))
    assert bool(((area > 0.6 * 64) & (area < 1.5 * 64)).all())


@given(st.integers(0, 2**31 - 1))
def test_homography_maps_the_four_corners(seed):
    g = _gen(seed)
    src = (
        torch.tensor([[0.0, 0.0], [9.0, 0.0], [9.0, 7.0], [0.0, 7.0]])[None]
        + torch.rand(1, 1, 2, generator=g) * 10
    )
    dst = src + (torch.rand(1, 4, 2, generator=g) - 0.5) * 4
    hom = homography(src.double(), dst.double())
    ones = torch.ones(1, 4, 1, dtype=torch.float64)
    mapped = torch.cat([src.double(), ones], -1) @ hom.transpose(1, 2)
    mapped = mapped[..., :2] / mapped[..., 2:]
    torch.testing.assert_close(mapped, dst.double(), atol=1e-8, rtol=0)


def test_warp_with_the_identity_homography_keeps_the_image():
    x = _images(2, (3, 17, 23))
    out = warp(x, torch.eye(3).expand(2, 3, 3))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    shift = torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]])[None]  # output p shows p + 2
    shifted = warp(x[:1], shift)
    torch.testing.assert_close(shifted[..., :-2], x[:1, ..., 2:], atol=1e-5, rtol=0)
    assert float(shifted[..., -2:].abs().max()) == 0.0


@pytest.mark.parametrize("lighting", ["covered", "image", "none"])
@pytest.mark.parametrize("location", ["center", "random"])
def test_gradients_reach_every_patch_pixel(lighting, location):
    x = _images(6, (3, 32, 32))
    patch = torch.rand(1, 3, 6, 6, generator=_gen(2), requires_grad=True)
    per_image = torch.rand(6, 3, 6, 6, generator=_gen(4), requires_grad=True)
    r = PatchRenderer((6, 6), location=location, distortion=0.1, lighting=lighting)
    weights = torch.rand(6, 3, 32, 32, generator=_gen(5))
    for p in (patch, per_image):
        out = r(x, p, generator=_gen(6)).images
        (out * weights).sum().backward()
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
        assert bool((p.grad.abs().sum(dim=(0, 1)) > 0).all())


def test_a_fixed_seed_reproduces_the_draw_and_another_seed_does_not():
    r = PatchRenderer((5, 5), location="random", distortion=0.2, lighting="covered")
    x, patch = _images(10, (1, 28, 28)), torch.rand(1, 5, 5, generator=_gen(1))
    a, b = r(x, patch, generator=_gen(7)), r(x, patch, generator=_gen(7))
    assert torch.equal(a.images, b.images) and torch.equal(a.mask, b.mask)
    c = r(x, patch, generator=_gen(8))
    assert not torch.equal(a.images, c.images)
    d1, d2 = r.draw(10, 28, 28, _gen(7)), r.draw(10, 28, 28, _gen(7))
    assert all(torch.equal(u, v) for u, v in zip(d1, d2, strict=True))


def test_a_given_draw_renders_two_patches_identically():
    r = PatchRenderer((5, 5), location="random", distortion=0.2, lighting="none")
    x = _images(4, (1, 28, 28))
    draw = r.draw(4, 28, 28, _gen(1))
    ones = r(x, torch.ones(1, 5, 5), draw=draw)
    zeros = r(x, torch.zeros(1, 5, 5), draw=draw)
    assert torch.equal(ones.mask, zeros.mask)
    assert isinstance(draw, Draw)


def test_patch_shape_covers_the_asked_area():
    assert patch_shape(0.1, 28, 28) == (9, 9)
    assert patch_shape(1.0, 28, 28) == (28, 28)
    assert patch_shape(1e-6, 28, 28) == (1, 1)
    assert patch_shape(0.05, 224, 224) == (50, 50)
    with pytest.raises(ValueError, match="area=0"):
        patch_shape(0, 28, 28)


def test_bad_settings_and_shapes_are_refused_with_the_value():
    with pytest.raises(ValueError, match="location='middle'"):
        PatchRenderer((3, 3), location="middle")
    with pytest.raises(ValueError, match="lighting='sun'"):
        PatchRenderer((3, 3), lighting="sun")
    with pytest.raises(ValueError, match=r"distortion=0\.7"):
        PatchRenderer((3, 3), distortion=0.7)
    r = PatchRenderer((3, 3))
    with pytest.raises(ValueError, match="do not fit"):
        r(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        PatchRenderer((9, 9)).position(8, 8)
    assert repr(r) == (
        "PatchRenderer(patch_size=(3, 3), location='center', distortion=0.0, lighting='covered')"
    )
