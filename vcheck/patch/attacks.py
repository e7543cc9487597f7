"""Adversarial patch attacks optimised through the renderer (expectation over transformations).

Each optimisation step renders the current patch with a fresh random draw of the renderer
(location, warp; the lighting follows from where the patch lands), so the patch must work
across the renderings rather than for one exact placement. Evaluation draws again, from a
different generator, so a patch is judged on renderings it was never optimised on.

Settings go in the constructor and the data in the call (foolbox 3 style); ``repr`` shows
the settings. The threat model, i.e. patch size, location, warp and lighting, is the
:class:`~vcheck.patch.render.PatchRenderer` passed in the call, as foolbox takes
``epsilons`` in the call.

- :class:`UniversalPatchAttack`: one patch for a set of images (or one per class with
  ``per_class=True``), untargeted; optimised on minibatches of the set.
- :class:`PerImagePatchAttack`: one patch per image, optimised on that image.
- :func:`noise_patches`: uniform noise patches of the same shape, the occlusion baseline.
- :func:`predict_patched`: predictions of a model on rendered images, in batches.

Public names: :data:`OPTIMIZERS`, :class:`UniversalPatchAttack`,
:class:`PerImagePatchAttack`, :func:`noise_patches`, :func:`predict_patched`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vcheck.patch.render import Draw, PatchRenderer

# "adam": Adam on the patch pixels; "sign": signed-gradient ascent (PGD without projection
# other than onto [0, 1]). Both clamp to [0, 1] after each step.
OPTIMIZERS = ("adam", "sign")
ProgressFn = Callable[[int], None]


def total_variation(patches: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels per patch, (K, C, h, w) -> (K,)."""
    dy = (patches[..., 1:, :] - patches[..., :-1, :]).abs().flatten(1)
    dx = (patches[..., :, 1:] - patches[..., :, :-1]).abs().flatten(1)
    parts = [d.mean(1) for d in (dy, dx) if d.shape[1]]
    return sum(parts) if parts else patches.new_zeros(patches.shape[0])


class _PatchAttack:
    """Shared optimiser settings and the step loop."""

    def __init__(
        self,
        *,
        steps: int = 40,
        step_size: float = 0.05,
        optimizer: str = "adam",
        tv_weight: float = 0.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if steps < 1 or batch_size < 1 or step_size <= 0 or tv_weight < 0:
            raise ValueError(
                f"steps={steps}, batch_size={batch_size}, step_size={step_size}, "
                f"tv_weight={tv_weight}: expected positive steps, batch size and step size "
                "and a non-negative tv_weight"
            )
        self.steps = steps
        self.step_size = step_size
        self.optimizer = optimizer
        self.tv_weight = tv_weight
        self.batch_size = batch_size
        self.seed = seed

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def _optimise(
        self,
        patches: torch.Tensor,
        objective: Callable[[torch.Tensor, int], tuple[torch.Tensor, int]],
        progress: ProgressFn | None,
    ) -> torch.Tensor:
        """Minimise ``objective(patches, step) -> (loss, images used)`` plus total variation."""
        patches = patches.clone().requires_grad_(True)
        adam = torch.optim.Adam([patches], lr=self.step_size) if self.optimizer == "adam" else None
        for step in range(self.steps):
            with torch.enable_grad():  # also when a caller disabled gradients globally
                loss, used = objective(patches, step)
                if self.tv_weight:
                    loss = loss + self.tv_weight * total_variation(patches).sum()
                grad = torch.autograd.grad(loss, patches)[0]
            with torch.no_grad():
                if adam is not None:
                    patches.grad = grad
                    adam.step()
                else:
                    patches -= self.step_size * grad.sign()
                patches.clamp_(0, 1)
            if progress is not None:
                progress(used)
        return patches.detach()


def _untargeted_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What the attack minimises: minus the cross-entropy of the true labels (summed)."""
    return -F.cross_entropy(logits, labels, reduction="sum")


class UniversalPatchAttack(_PatchAttack):
    """One patch that makes a model misclassify as many images of a set as possible.

    Args:
        steps: optimisation steps, each on one minibatch with fresh renderings.
        step_size: Adam's learning rate, or the signed step of ``optimizer="sign"``.
        optimizer: one of :data:`OPTIMIZERS`.
        tv_weight: weight of the total-variation penalty (smoother, more printable patches).
        batch_size: images per step.
        per_class: one patch per true class (the attacker knows what the object is).
        seed: the initial patch, the minibatch order and the renderings.

    Example:
        >>> attack = UniversalPatchAttack(steps=2, batch_size=4)
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        >>> x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
        >>> attack(net, x, y, PatchRenderer((3, 3))).shape
        torch.Size([1, 1, 3, 3])
    """

    def __init__(
        self,
        *,
        steps: int = 40,
        step_size: float = 0.05,
        optimizer: str = "adam",
        tv_weight: float = 0.0,
        batch_size: int = 64,
        per_class: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            steps=steps,
            step_size=step_size,
            optimizer=optimizer,
            tv_weight=tv_weight,
            batch_size=batch_size,
            seed=seed,
        )
        self.per_class = per_class

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        renderer: PatchRenderer,
        *,
        num_classes: int | None = None,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Optimise on ``images`` (N, C, H, W) with true ``labels`` (N,).

        Returns:
            (1, C, h, w), or (K, C, h, w) with ``per_class`` (K = ``num_classes``, default
            the largest label + 1; a class absent from ``labels`` keeps its random start).
        """
        n, c = images.shape[:2]
        if n == 0:
            raise ValueError("no images to optimise the patch on")
        gen = torch.Generator().manual_seed(self.seed)
        k = (num_classes or int(labels.max()) + 1) if self.per_class else 1
        start = torch.rand(k, c, *renderer.patch_size, generator=gen).to(images.device)
        order: list[int] = []

        def objective(patches: torch.Tensor, step: int):
            nonlocal order
            if len(order) < min(self.batch_size, n):
                order += torch.randperm(n, generator=gen).tolist()
            idx, order = order[: self.batch_size], order[self.batch_size :]
            x, y = images[idx], labels[idx]
            chosen = patches[y] if self.per_class else patches
            rendered = renderer(x, chosen, generator=gen).images
            return _untargeted_loss(model(rendered), y), len(idx)

        return self._optimise(start, objective, progress)


class PerImagePatchAttack(_PatchAttack):
    """One patch per image, each optimised to make the model misclassify its own image.

    The images are optimised ``batch_size`` at a time; each step renders every patch with a
    fresh draw. Settings as :class:`UniversalPatchAttack` (no ``per_class``).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        >>> x, y = torch.rand(5, 1, 8, 8), torch.arange(5) % 3
        >>> PerImagePatchAttack(steps=2)(net, x, y, PatchRenderer((3, 3))).shape
        torch.Size([5, 1, 3, 3])
    """

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        renderer: PatchRenderer,
        *,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Returns (N, C, h, w): the patch of each image."""
        n, c = images.shape[:2]
        gen = torch.Generator().manual_seed(self.seed)
        start = torch.rand(n, c, *renderer.patch_size, generator=gen).to(images.device)
        out = []
        for lo in range(0, n, self.batch_size):
            x, y = images[lo : lo + self.batch_size], labels[lo : lo + self.batch_size]

            def objective(patches, step, x=x, y=y):
                rendered = renderer(x, patches, generator=gen).images
                return _untargeted_loss(model(rendered), y), len(x)

            out.append(self._optimise(start[lo : lo + self.batch_size], objective, progress))
        return torch.cat(out)


def noise_patches(n: int, channels: int, patch_size: tuple[int, int], seed: int) -> torch.Tensor:
    """(n, C, h, w) uniform noise patches: the occlusion baseline of the same size."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, *patch_size, generator=gen)


@torch.no_grad()
def predict_patched(
    model: nn.Module,
    images: torch.Tensor,
    patches: torch.Tensor,
    renderer: PatchRenderer,
    draw: Draw,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Predicted classes (N,) of ``model`` on ``images`` with ``patches`` (1 or N, C, h, w)
    rendered by ``draw``."""
    preds = []
    for lo in range(0, len(images), batch_size):
        sl = slice(lo, lo + batch_size)
        p = patches if patches.shape[0] == 1 else patches[sl]
        part = Draw(draw.top[sl], draw.left[sl], draw.offsets[sl])
        out = renderer(images[sl], p.to(images.device), draw=part).images
        preds.append(model(out).argmax(1))
    return torch.cat(preds)
