"""Patch attacks on small inputs: they optimise through the renderer and beat a noise patch.

Properties only (which way the patch moves, ASR above the occlusion baseline with a wide
margin, shapes, bounds, determinism on one machine), never one machine's exact numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vcheck.data.evalset import stratified_indices
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.functional.attack_success import attack_success_counts
from vcheck.models import resolve_model
from vcheck.patch.attacks import (
    PerImagePatchAttack,
    UniversalPatchAttack,
    noise_patches,
    predict_patched,
    total_variation,
)
from vcheck.patch.render import PatchRenderer


class Brightness(nn.Module):
    """Class 1 when the image's centre 4x4 is bright, else class 0 (a model with a known
    answer: an untargeted patch over the centre must turn dark centres bright and bright
    centres dark)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, :, 2:6, 2:6].mean(dim=(1, 2, 3))
        return torch.stack([0.5 - centre, centre - 0.5], dim=1) * 20


def _toy(n: int = 16):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.2 + labels.view(-1, 1, 1, 1) * 0.7
    return x, labels


@pytest.mark.trains
def test_universal_patch_on_one_class_moves_the_way_that_fools_it():
    x, y = _toy()
    dark = y == 0
    renderer = PatchRenderer((4, 4), location="center", lighting="none")
    attack = UniversalPatchAttack(steps=20, step_size=0.1, batch_size=8)
    patch = attack(Brightness(), x[dark], y[dark], renderer)
    assert patch.shape == (1, 1, 4, 4)
    assert float(patch.mean()) > 0.9  # dark centres are fooled by a bright patch
    pred = predict_patched(Brightness(), x[dark], patch, renderer, renderer.draw(8, 8, 8, None))
    assert bool((pred == 1).all())


@pytest.mark.trains
@pytest.mark.parametrize("optimizer", ["adam", "sign"])
def test_per_class_patches_fool_both_classes(optimizer):
    x, y = _toy()
    renderer = PatchRenderer((4, 4), location="center", distortion=0.1, lighting="none")
    attack = UniversalPatchAttack(
        steps=20, step_size=0.1, optimizer=optimizer, batch_size=8, per_class=True
    )
    patches = attack(Brightness(), x, y, renderer, num_classes=3)
    assert patches.shape == (3, 1, 4, 4)
    assert float(patches[0].mean()) > 0.8 and float(patches[1].mean()) < 0.2
    assert float(patches.min()) >= 0 and float(patches.max()) <= 1
    # class 2 is absent: its patch stays at the random start
    start = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(patches[2], start[2])
    draw = renderer.draw(len(x), 8, 8, torch.Generator().manual_seed(9))
    pred = predict_patched(Brightness(), x, patches[y], renderer, draw)
    assert bool((pred != y).all())


@pytest.mark.trains
def test_per_image_patches_fool_each_image():
    x, y = _toy(6)
    renderer = PatchRenderer((4, 4), location="center", lighting="none")
    patches = PerImagePatchAttack(steps=15, step_size=0.1, batch_size=4)(
        Brightness(), x, y, renderer
    )
    assert patches.shape == (6, 1, 4, 4)
    pred = predict_patched(Brightness(), x, patches, renderer, renderer.draw(6, 8, 8, None))
    assert bool((pred != y).all())


def test_attacks_show_their_settings_and_refuse_bad_ones():
    attack = UniversalPatchAttack(steps=5, step_size=0.1, tv_weight=0.5, per_class=True)
    assert repr(attack) == (
        "UniversalPatchAttack(steps=5, step_size=0.1, optimizer='adam', tv_weight=0.5, "
        "batch_size=64, seed=0, per_class=True)"
    )
    assert repr(PerImagePatchAttack(steps=3)).startswith("PerImagePatchAttack(steps=3,")
    with pytest.raises(ValueError, match="optimizer='lbfgs'"):
        UniversalPatchAttack(optimizer="lbfgs")
    with pytest.raises(ValueError, match="steps=0"):
        PerImagePatchAttack(steps=0)
    with pytest.raises(ValueError, match="no images"):
        empty = torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)
        UniversalPatchAttack()(Brightness(), *empty, PatchRenderer((2, 2)))


def test_total_variation_is_zero_for_flat_patches_and_grows_with_edges():
    flat = torch.full((2, 3, 5, 5), 0.4)
    assert total_variation(flat).tolist() == [0.0, 0.0]
    stripes = flat.clone()
    stripes[1, :, :, ::2] = 1.0
    tv = total_variation(stripes)
    assert float(tv[0]) == 0.0 and float(tv[1]) > 0.2


@pytest.mark.trains
def test_total_variation_weight_smooths_the_patch():
    # The patch sits off the centre the model reads, so only the penalty moves its pixels.
    x, y = _toy()
    renderer = PatchRenderer((2, 2), location="top_left", lighting="none")
    start = torch.rand(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    rough = UniversalPatchAttack(steps=30, step_size=0.05, batch_size=8)(
        Brightness(), x, y, renderer
    )
    smooth = UniversalPatchAttack(steps=30, step_size=0.05, batch_size=8, tv_weight=1.0)(
        Brightness(), x, y, renderer
    )
    assert torch.equal(rough, start)
    assert float(total_variation(smooth)[0]) < 0.5 * float(total_variation(rough)[0])


def test_attack_runs_while_gradients_are_globally_disabled():
    x, y = _toy(4)
    with torch.no_grad():
        patch = UniversalPatchAttack(steps=3, step_size=0.1, batch_size=4)(
            Brightness(), x[y == 0], y[y == 0], PatchRenderer((4, 4), lighting="none")
        )
    assert float(patch.mean()) > 0.5


@pytest.fixture(scope="module")
def fmnist_sample():
    model = resolve_model("fmnist_mlp").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    idx = stratified_indices(data.labels, 240, seed=0)
    x, y = data.images(idx), data.labels[idx]
    return model.module, x[::2], y[::2], x[1::2], y[1::2]


@pytest.mark.trains
def test_universal_patch_beats_a_noise_patch_on_held_out_images(fmnist_sample):
    net, fit_x, fit_y, x, y = fmnist_sample
    renderer = PatchRenderer((7, 7), location="center", distortion=0.1, lighting="image")
    attack = UniversalPatchAttack(steps=25, step_size=0.25, batch_size=32, seed=1)
    patch = attack(net, fit_x, fit_y, renderer)
    again = attack(net, fit_x, fit_y, renderer)
    assert torch.equal(patch, again)  # seeded: the same patch on the same machine
    draw = renderer.draw(len(x), 28, 28, torch.Generator().manual_seed(5))
    with torch.no_grad():
        clean = net(x).argmax(1)
    adv = predict_patched(net, x, patch, renderer, draw)
    noise = predict_patched(net, x, noise_patches(len(x), 1, (7, 7), 6), renderer, draw)
    k_adv, n = attack_success_counts(y.numpy(), clean.numpy(), adv.numpy())
    k_noise, _ = attack_success_counts(y.numpy(), clean.numpy(), noise.numpy())
    assert n > 80
    assert k_adv / n > k_noise / n + 0.1, (k_adv, k_noise, n)


@pytest.mark.trains
def test_per_image_patches_beat_the_universal_patch_and_noise(fmnist_sample):
    net, fit_x, fit_y, x, y = fmnist_sample
    x, y = x[:40], y[:40]
    renderer = PatchRenderer((10, 10), location="center", distortion=0.1, lighting="image")
    settings = {"steps": 15, "step_size": 0.25, "batch_size": 40, "seed": 1}
    per_image = PerImagePatchAttack(**settings)(net, x, y, renderer)
    universal = UniversalPatchAttack(**settings)(net, fit_x, fit_y, renderer)
    draw = renderer.draw(len(x), 28, 28, torch.Generator().manual_seed(5))
    with torch.no_grad():
        clean = net(x).argmax(1).numpy()
    k = {}
    for name, patches in [
        ("per_image", per_image),
        ("universal", universal),
        ("noise", noise_patches(len(x), 1, (10, 10), 6)),
    ]:
        pred = predict_patched(net, x, patches, renderer, draw).numpy()
        k[name], n = attack_success_counts(y.numpy(), clean, pred)
    assert k["per_image"] >= k["universal"] and k["per_image"] >= k["noise"] + 5, (k, n)
