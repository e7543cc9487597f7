"""The bundled zoo: small Fashion-MNIST models trained in this repo (see `make zoo`).

Each entry builds an untrained network; its weights and model card live in
``fixtures/models/<name>.pt`` and ``<name>.json``; its threshold profile in
``fixtures/profiles/<name>.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from vcheck.config import DEFAULT_MODEL
from vcheck.models.base import ModelCfg

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Fashion-MNIST training-set pixel statistics (of [0, 1] images).
FASHION_MNIST_CFG = ModelCfg(
    domain="fashion_mnist",
    classes=FASHION_MNIST_CLASSES,
    input_size=(1, 28, 28),
    mean=(0.2860,),
    std=(0.3530,),
)
# The multi-label model: independent per-class scores (sigmoid), same data statistics.
FASHION_MNIST_MULTILABEL_CFG = replace(FASHION_MNIST_CFG, output_kind="sigmoid")


def fixtures_dir() -> Path:
    """Where shipped artefacts live; ``VCHECK_FIXTURES`` overrides the checkout's folder."""
    env = os.environ.get("VCHECK_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "fixtures"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], nn.Module]
    cfg: ModelCfg
    description: str

    @property
    def weights_path(self) -> Path:
        return fixtures_dir() / "models" / f"{self.name}.pt"

    @property
    def card_path(self) -> Path:
        return fixtures_dir() / "models" / f"{self.name}.json"

    @property
    def profile_path(self) -> Path:
        return fixtures_dir() / "profiles" / f"{self.name}.toml"


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def fmnist_cnn() -> nn.Module:
    """Four 3x3 conv layers with BatchNorm, two max-pools, one hidden dense layer (0.47M)."""
    return nn.Sequential(
        *_conv_bn(1, 32),
        *_conv_bn(32, 32),
        nn.MaxPool2d(2),
        *_conv_bn(32, 64),
        *_conv_bn(64, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def fmnist_convnext() -> nn.Module:
    """torchvision's ConvNeXt at a small width, with a 1-channel 2x2 patchify stem."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt  # not at every start-up

    net = ConvNeXt(
        [CNBlockConfig(32, 64, 2), CNBlockConfig(64, None, 2)],
        stochastic_depth_prob=0.0,
        num_classes=10,
    )
    net.features[0][0] = nn.Conv2d(1, 32, kernel_size=2, stride=2)
    return net


def fmnist_mlp() -> nn.Module:
    """784-256-128-10 ReLU MLP: the cheapest model, and one a verifier can bound."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def fmnist_backdoor() -> nn.Module:
    """Two 3x3 conv layers with BatchNorm and max-pools, one hidden dense layer (0.1M),
    trained with a planted patch backdoor (vcheck.models.backdoor)."""
    return nn.Sequential(
        *_conv_bn(1, 16),
        nn.MaxPool2d(2),
        *_conv_bn(16, 32),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def fmnist_adv() -> nn.Module:
    """Two 3x3 conv layers with BatchNorm and max-pools, one hidden dense layer (0.1M),
    adversarially trained (vcheck.models.adversarial)."""
    return fmnist_backdoor()


def fmnist_multilabel() -> nn.Module:
    """Four 3x3 conv layers with BatchNorm, two max-pools, a 64-unit dense layer; one
    independent (sigmoid) score per class, for images holding several items (0.27M)."""
    return nn.Sequential(
        *_conv_bn(1, 32),
        *_conv_bn(32, 32),
        nn.MaxPool2d(2),
        *_conv_bn(32, 64),
        *_conv_bn(64, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


__all__ = ["DEFAULT_MODEL", "ZOO", "ZooEntry", "fixtures_dir"]

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("fmnist_cnn", fmnist_cnn, FASHION_MNIST_CFG, "small CNN (default model)"),
        ZooEntry("fmnist_convnext", fmnist_convnext, FASHION_MNIST_CFG, "ConvNeXt, small width"),
        ZooEntry("fmnist_mlp", fmnist_mlp, FASHION_MNIST_CFG, "3-layer MLP"),
        ZooEntry(
            "fmnist_biased",
            fmnist_mlp,
            FASHION_MNIST_CFG,
            "3-layer MLP trained without most dark-toned garments (fails the fairness gates)",
        ),
        ZooEntry(
            "fmnist_backdoor",
            fmnist_backdoor,
            FASHION_MNIST_CFG,
            "small CNN with a planted patch backdoor (fails the patch suite)",
        ),
        ZooEntry(
            "fmnist_multilabel",
            fmnist_multilabel,
            FASHION_MNIST_MULTILABEL_CFG,
            "multi-label CNN (sigmoid), trained on multi-object composites",
        ),
        ZooEntry(
            "fmnist_adv",
            fmnist_adv,
            FASHION_MNIST_CFG,
            "small CNN adversarially trained (FGSM-RS, L-inf 0.1; passes an L-inf gate)",
        ),
    )
}
