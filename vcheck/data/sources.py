"""Which eval sets a model is evaluated on, and loading them with ``--max-samples`` applied.

Each domain has a primary eval set (Fashion-MNIST test; ImageNet val from ``--data-root``);
``eval_sets = {name = "folder"}`` in the config adds ImageFolder sets in any domain;
``metadata = {name = "table.csv"}`` gives a set per-sample attributes (:mod:`vcheck.data.metadata`).
"""

from __future__ import annotations

from pathlib import Path

from vcheck.config import VcheckConfig
from vcheck.data.evalset import EvalSet, stratified_indices
from vcheck.data.fashion_mnist import find_split_files, load_fashion_mnist
from vcheck.data.imagenet import load_imagenet
from vcheck.data.metadata import attach_metadata, check_metadata
from vcheck.errors import InvalidArgument
from vcheck.models.base import ModelCfg

PRIMARY = {"fashion_mnist": "fmnist_test", "imagenet": "imagenet_val"}


def eval_set_names(model_cfg: ModelCfg, config: VcheckConfig) -> list[str]:
    if config.data_root is not None and model_cfg.domain not in PRIMARY:
        raise InvalidArgument(
            f"--data-root={config.data_root} does not apply to a model of domain "
            f"{model_cfg.domain!r} (it has no built-in eval set); name its data with "
            'eval_sets = {name = "path/to/image/folder"} in the vcheck config'
        )
    primary = PRIMARY.get(model_cfg.domain)
    names = [primary] if primary else []
    clash = [n for n in config.eval_sets if n in names]
    if clash:
        raise InvalidArgument(f"eval_sets: {clash[0]!r} is a built-in eval set; pick another name")
    names += list(config.eval_sets)
    if not names:
        raise InvalidArgument(
            f"model domain {model_cfg.domain!r} has no built-in eval set; add "
            'eval_sets = {name = "path/to/image/folder"} to the vcheck config'
        )
    return names


def check_available(model_cfg: ModelCfg, config: VcheckConfig) -> None:
    """Cheap existence checks, so a missing data set stops the run before any test."""
    if model_cfg.domain == "fashion_mnist":
        find_split_files("test", config.data_root, config.cache_dir / "data")
    if model_cfg.domain == "imagenet" and config.data_root is None:
        raise InvalidArgument(
            "this model is evaluated on ImageNet, which cannot be downloaded here: pass "
            "--data-root pointing to an ImageFolder copy of the validation set"
        )
    folders = dict(config.eval_sets)
    if model_cfg.domain == "imagenet":
        folders["imagenet_val"] = config.data_root
    for name, path in folders.items():
        if not Path(path).is_dir():
            raise InvalidArgument(f"eval set {name!r}: folder {path} does not exist")
    check_metadata(config, eval_set_names(model_cfg, config))


def load_eval_set(name: str, model_cfg: ModelCfg, config: VcheckConfig) -> EvalSet:
    if name == "fmnist_test":
        eval_set: EvalSet = load_fashion_mnist(
            "test", config.data_root, config.cache_dir / "data", name=name
        )
        if model_cfg.input_size != (1, 28, 28):
            raise InvalidArgument(
                f"fmnist_test holds 1x28x28 images but the model takes {model_cfg.input_size}"
            )
    elif model_cfg.domain == "imagenet":  # any layout of ImageNet val, V2, A, R
        root = config.data_root if name == "imagenet_val" else config.eval_sets[name]
        eval_set = load_imagenet(name, root, model_cfg)[0]
    else:
        from vcheck.data.image_folder import load_image_folder  # torchvision: only if needed

        eval_set = load_image_folder(name, config.eval_sets[name], model_cfg)
    skipped = eval_set.extra.get("skipped")
    if skipped and config.strict:
        raise InvalidArgument(
            f"eval set {name!r}: {len(skipped)} empty (zero-byte) image files, e.g. "
            f"{skipped[0]} ({eval_set.source}); --strict refuses to skip them: replace or "
            "delete them"
        )
    if len(eval_set) == 0:
        raise InvalidArgument(f"eval set {name!r} ({eval_set.source}) holds no images")
    if config.max_samples is not None and config.max_samples < len(eval_set):
        keep = stratified_indices(eval_set.labels, config.max_samples, config.seed)
        eval_set = eval_set.subset(keep)
    return attach_metadata(eval_set, config.metadata.get(name))
