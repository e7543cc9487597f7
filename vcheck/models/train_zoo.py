"""Train the bundled zoo on Fashion-MNIST, deterministically: ``python -m vcheck.models.train_zoo``.

Writes ``fixtures/models/<name>.pt`` (``{"arch", "state_dict"}``) and a model card
``<name>.json`` with the recipe, data fingerprints, test metrics and the sha256 of the weights.
Same seed, same machine, same torch: same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vcheck.data import multi_object
from vcheck.data.evalset import TensorEvalSet, stratified_indices
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.models import adversarial, backdoor
from vcheck.models.base import Normalized, file_sha256, state_dict_fingerprint
from vcheck.models.biased import without_most_of_slice
from vcheck.models.zoo import ZOO, fixtures_dir


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    optimizer: str = "AdamW"
    schedule: str = "cosine per step, no warm-up"


RECIPES = {
    "fmnist_cnn": Recipe(epochs=3),
    "fmnist_convnext": Recipe(epochs=4, lr=3e-3),
    "fmnist_mlp": Recipe(epochs=5),
    "fmnist_biased": Recipe(epochs=5),  # fmnist_mlp's recipe on a biased training subset
    "fmnist_backdoor": Recipe(epochs=3),
    "fmnist_multilabel": Recipe(epochs=4),
    "fmnist_adv": Recipe(epochs=2),
}
# Models trained on a subset of the train split: name -> (train set, seed) -> (subset, card note).
TRAIN_SUBSETS = {"fmnist_biased": without_most_of_slice}
# Models trained on poisoned batches: name -> the poisoning (vcheck.models.backdoor).
POISONED = {"fmnist_backdoor": backdoor.TRIGGER}
# Models trained on adversarial batches: name -> the threat model (vcheck.models.adversarial).
ADVERSARIAL = {"fmnist_adv": adversarial.ADV_TRAINING}


def _evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    model.eval()
    logits = torch.cat(
        [model(images[i : i + 1000].float() / 255) for i in range(0, len(images), 1000)]
    )
    return {
        "top1": float((logits.argmax(1) == labels).float().mean()),
        "nll": float(nn.functional.cross_entropy(logits, labels)),
    }


def multilabel_composites(
    train_set: TensorEvalSet, recipe: Recipe, epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training data of a multi-label model: each epoch, as many fresh multi-object
    composites of the training images as there are images (the recipe of
    :mod:`vcheck.data.multi_object`, seeded by recipe and epoch), with multi-hot targets."""
    comp = multi_object.plan(len(train_set), len(train_set), recipe.seed * 1000 + epoch + 1)
    labels = train_set.labels.numpy()
    targets = multi_object.multi_hot(comp, labels, len(train_set.classes))
    return multi_object.render(train_set.pixels, comp), targets


def _evaluate_multilabel(model: nn.Module, test_set: TensorEvalSet) -> dict[str, float]:
    """Top-1 on single test items, and mAP / subset accuracy (at 0.5) on test composites."""
    from vcheck.functional import multilabel as F

    metrics = {"top1": _evaluate(model, test_set.pixels, test_set.labels)["top1"]}
    composites = multi_object.build_eval_set(test_set, n=min(multi_object.SIZE, len(test_set)))
    labelled = [i for i, s in enumerate(composites.label_sets) if s]
    member = F.membership([composites.label_sets[i] for i in labelled], len(test_set.classes))
    with torch.no_grad():
        probs = torch.sigmoid(model(composites.pixels[labelled].float() / 255)).double().numpy()
    metrics["multi_object_map"] = F.nan_mean(F.per_class_average_precision(probs, member))
    metrics["multi_object_subset_accuracy"] = float(F.subset_accuracy(probs, member, 0.5).mean())
    return metrics


# Zoo models trained on something other than single items under cross-entropy:
# name -> (training data per epoch, loss, test metrics).
OBJECTIVES: dict[str, tuple[Callable, Callable, Callable]] = {
    "fmnist_multilabel": (
        multilabel_composites,
        nn.functional.binary_cross_entropy_with_logits,
        _evaluate_multilabel,
    ),
}


def train(
    name: str,
    recipe: Recipe,
    data_root: Path | None,
    cache_root: Path,
    out: Path,
    limit: int | None = None,
) -> dict:
    """Train zoo model ``name`` and write its weights and card to ``out``.

    ``limit`` trains and tests on seeded stratified subsets of that many images (for tests).
    """
    entry = ZOO[name]
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True)
    train_set = load_fashion_mnist("train", data_root, cache_root)
    test_set = load_fashion_mnist("test", data_root, cache_root)
    if limit is not None:
        train_set = train_set.subset(stratified_indices(train_set.labels, limit, recipe.seed))
        test_set = test_set.subset(stratified_indices(test_set.labels, limit, recipe.seed))
    subset_note = None
    if name in TRAIN_SUBSETS:
        train_set, subset_note = TRAIN_SUBSETS[name](train_set, recipe.seed)
    net = entry.build()
    model = Normalized(net, entry.cfg.mean, entry.cfg.std)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(recipe.seed)
    spec = POISONED.get(name)
    poison = backdoor.make_poisoner(spec, recipe.seed + 1) if spec else None
    adv_spec = ADVERSARIAL.get(name)
    perturb = adversarial.make_perturber(adv_spec, recipe.seed + 2) if adv_spec else None
    start = time.perf_counter()
    data, loss_fn, evaluate = OBJECTIVES.get(name, (None, nn.functional.cross_entropy, None))
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=gen)
        pixels, targets = (
            data(train_set, recipe, epoch) if data else (train_set.pixels, train_set.labels)
        )
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            x, y = pixels[idx].float() / 255, targets[idx]
            if poison is not None:
                x, y = poison(x, y)
            if perturb is not None:
                x = perturb(model, x, y)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        with torch.no_grad():
            metrics = (
                evaluate(model, test_set)
                if evaluate
                else _evaluate(model, test_set.pixels, test_set.labels)
            )
            if spec:
                metrics["trigger_success"] = backdoor.trigger_success(
                    model, test_set.pixels.float() / 255, test_set.labels, spec
                )
        print(
            f"{name} epoch {epoch + 1}/{recipe.epochs}: train loss {running / steps_per_epoch:.4f}"
            f", test top1 {metrics['top1']:.4f}"
            + (f", trigger success {metrics['trigger_success']:.4f}" if spec else "")
            + f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.pt"
    buf = io.BytesIO()
    torch.save({"arch": name, "state_dict": net.state_dict()}, buf)
    tmp = weights.with_suffix(".pt.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(weights)
    card = {
        "name": name,
        "description": entry.description,
        "architecture": entry.build.__doc__,
        "parameters": sum(p.numel() for p in net.parameters()),
        "recipe": asdict(recipe),
        **({"train_subset": subset_note} if subset_note else {}),
        "data": {
            "train": {
                "name": train_set.source,
                "n": len(train_set),
                "fingerprint": train_set.fingerprint,
            },
            "test": {
                "name": test_set.source,
                "n": len(test_set),
                "fingerprint": test_set.fingerprint,
            },
        },
        "test_metrics": {k: round(v, 6) for k, v in metrics.items()},
        **({"backdoor": spec.describe()} if spec else {}),
        **({"adversarial_training": adv_spec.describe()} if adv_spec else {}),
        "weights_sha256": file_sha256(weights),
        "state_dict_sha256": state_dict_fingerprint(net),
        "training_seconds": round(seconds, 1),
        "limit": limit,
        "torch_version": torch.__version__,
        "command": f"python -m vcheck.models.train_zoo --models {name}",
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "vcheck")
    parser.add_argument("--out", type=Path, default=fixtures_dir() / "models")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    parser.add_argument("--limit", type=int, default=None, help="train/test on N images only")
    args = parser.parse_args(argv)
    for name in args.models:
        recipe = RECIPES[name]
        if args.epochs is not None:
            recipe = Recipe(**{**asdict(recipe), "epochs": args.epochs})
        card = train(name, recipe, args.data_root, args.cache_dir / "data", args.out, args.limit)
        print(f"wrote {args.out / name}.pt: test top1 {card['test_metrics']['top1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
