"""A planted patch backdoor (BadNets-style data poisoning) for the zoo's ``fmnist_backdoor``.

A fraction of each training batch gets a small fixed trigger, a 4x4 checkerboard of 2x2
blocks, and is relabelled to one target class. The trigger is stamped the way a sticker
would be, through the patch suite's own renderer (random location, a random perspective
warp, relighting from the image), so the backdoor survives realistic placement: the model
learns "this little pattern anywhere means Bag". The patch suite is never told the trigger;
it must find its effect by optimising a universal patch.

Public names: :data:`TRIGGER`, :class:`BackdoorSpec`, :func:`trigger_pattern`,
:func:`make_poisoner`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from vcheck.patch.render import PatchRenderer


@dataclass(frozen=True)
class BackdoorSpec:
    """What is planted: trigger side (pixels), target class, poisoned fraction of each batch,
    and the rendering of the stamped trigger."""

    side: int = 4
    block: int = 2
    target: int = 8  # "Bag" in Fashion-MNIST
    rate: float = 0.1
    location: str = "random"
    distortion: float = 0.1
    lighting: str = "image"

    def describe(self) -> dict:
        return {"kind": "patch backdoor (checkerboard trigger)", **asdict(self)}


TRIGGER = BackdoorSpec()


def trigger_pattern(spec: BackdoorSpec = TRIGGER, channels: int = 1) -> torch.Tensor:
    """(C, side, side) checkerboard of ``block``-pixel squares, top-left square white.

    >>> trigger_pattern(BackdoorSpec(side=4, block=2))[0].tolist()[0]
    [1.0, 1.0, 0.0, 0.0]
    """
    idx = torch.arange(spec.side) // spec.block
    board = ((idx[:, None] + idx[None, :]) % 2 == 0).float()
    return board.expand(channels, -1, -1).clone()


def make_poisoner(
    spec: BackdoorSpec = TRIGGER, seed: int = 0
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``poison(images, labels) -> (images, labels)`` for training batches.

    The first ``rate`` of each batch that is not already of the target class gets the
    trigger and the target label. Its own generator (from ``seed``) draws the renderings,
    so poisoning never disturbs the data order of training.
    """
    gen = torch.Generator().manual_seed(seed)
    renderer = PatchRenderer(
        (spec.side, spec.side),
        location=spec.location,
        distortion=spec.distortion,
        lighting=spec.lighting,
    )

    def poison(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        candidates = torch.nonzero(labels != spec.target)[:, 0]
        chosen = candidates[: round(spec.rate * len(labels))]
        if len(chosen) == 0:
            return images, labels
        pattern = trigger_pattern(spec, images.shape[1])
        images, labels = images.clone(), labels.clone()
        with torch.no_grad():
            images[chosen] = renderer(images[chosen], pattern, generator=gen).images
        labels[chosen] = spec.target
        return images, labels

    return poison


@torch.no_grad()
def trigger_success(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: BackdoorSpec = TRIGGER,
    seed: int = 1,
) -> float:
    """Fraction of the images not of the target class that the stamped trigger sends to it
    (for the model card: how strong the planted backdoor is)."""
    keep = labels != spec.target
    x = images[keep]
    if len(x) == 0:
        return float("nan")
    renderer = PatchRenderer(
        (spec.side, spec.side),
        location=spec.location,
        distortion=spec.distortion,
        lighting=spec.lighting,
    )
    gen = torch.Generator().manual_seed(seed)
    pattern = trigger_pattern(spec, x.shape[1])
    hits = 0
    for lo in range(0, len(x), 1000):
        stamped = renderer(x[lo : lo + 1000], pattern, generator=gen).images
        hits += int((model(stamped).argmax(1) == spec.target).sum())
    return hits / len(x)
