"""vcheck.predictions: one forward pass per (model, eval set), cached atomically on disk."""

import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from vcheck.cache import ResultCache
from vcheck.data.evalset import TensorEvalSet
from vcheck.errors import VcheckWarning
from vcheck.models.base import ModelCfg, finalize
from vcheck.predictions import cache_key, get_predictions

CFG = ModelCfg(
    domain="toy", classes=("a", "b", "c"), input_size=(1, 4, 4), mean=(0.5,), std=(0.25,)
)
CPU = torch.device("cpu")


def tiny_model(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, cfg.num_classes))
    return finalize("tiny", net, cfg, "test", CPU)


def eval_set(seed=0, n=10):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=gen)
    return TensorEvalSet(
        name="toy",
        ids=[f"s{i}" for i in range(n)],
        labels=torch.randint(0, 3, (n,), generator=gen),
        classes=CFG.classes,
        fingerprint=f"pixels-seed-{seed}-n-{n}",
        source="memory",
        pixels=pixels,
    )


@pytest.fixture
def cache(tmp_path):
    return ResultCache(tmp_path / "cache", "predictions")


def expected_logits(model, data):
    x = data.pixels.float() / 255
    net = model.module.net
    return net((x - 0.5) / 0.25)


def test_predictions_are_the_model_outputs_on_normalised_pixels(cache):
    model, data = tiny_model(), eval_set()
    preds = get_predictions(model, data, cache, batch_size=3)
    assert preds.logits.shape == (10, 3) and preds.logits.dtype == torch.float32
    torch.testing.assert_close(preds.logits, expected_logits(model, data))
    assert preds.ids == data.ids and torch.equal(preds.labels, data.labels)
    assert len(preds) == 10 and not preds.from_cache


def test_second_call_comes_from_the_cache_and_equals_the_first(cache):
    model, data = tiny_model(), eval_set()
    first = get_predictions(model, data, cache)
    second = get_predictions(model, data, cache)
    assert not first.from_cache and second.from_cache
    assert torch.equal(first.logits, second.logits)
    assert first.key == second.key
    assert cache.path(first.key).is_file()


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"\x00garbage, not a cache entry"),
        lambda path: path.write_bytes(path.read_bytes()[:40]),  # truncated
        # same size, a few bytes of the logits changed in place
        lambda path: path.write_bytes(path.read_bytes()[:-20] + bytes(20)),
    ],
    ids=["garbage", "truncated", "bytes-changed-in-place"],
)
def test_damaged_entry_warns_and_is_recomputed_and_rewritten(cache, damage):
    model, data = tiny_model(), eval_set()
    good = get_predictions(model, data, cache)
    path = cache.path(good.key)
    damage(path)
    with pytest.warns(VcheckWarning, match="fails its checksum"):
        again = get_predictions(model, data, cache)
    assert not again.from_cache
    torch.testing.assert_close(again.logits, good.logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry is valid
        third = get_predictions(model, data, cache)
    assert third.from_cache and torch.equal(third.logits, good.logits)


def test_entry_of_the_wrong_shape_is_recomputed(cache):
    model, data = tiny_model(), eval_set()
    good = get_predictions(model, data, cache)
    cache.store_arrays(good.key, {"logits": np.zeros((10, 5), np.float32)})  # valid, wrong
    with pytest.warns(VcheckWarning, match="wrong shape"):
        again = get_predictions(model, data, cache)
    assert not again.from_cache and torch.equal(again.logits, good.logits)


def test_key_changes_with_weights_preprocessing_and_eval_set():
    base = cache_key(tiny_model(0), eval_set(0))
    assert cache_key(tiny_model(0), eval_set(0)) == base  # same inputs, same key
    assert cache_key(tiny_model(1), eval_set(0)) != base  # other weights
    other_norm = ModelCfg(**{**CFG.__dict__, "mean": (0.4,)})
    assert cache_key(tiny_model(0, other_norm), eval_set(0)) != base  # other preprocessing
    resized = ModelCfg(**{**CFG.__dict__, "resize": 8})
    assert cache_key(tiny_model(0, resized), eval_set(0)) != base
    assert cache_key(tiny_model(0), eval_set(1)) != base  # other eval set
    assert cache_key(tiny_model(0), eval_set(0).subset([0, 1, 2])) != base


def test_renamed_classes_keep_the_key():
    renamed = ModelCfg(**{**CFG.__dict__, "classes": ("x", "y", "z")})
    assert cache_key(tiny_model(0, renamed), eval_set()) == cache_key(tiny_model(0), eval_set())


def test_changed_weights_are_not_served_from_the_cache(cache):
    data = eval_set()
    first = get_predictions(tiny_model(0), data, cache)
    other = get_predictions(tiny_model(1), data, cache)
    assert not other.from_cache and not torch.equal(first.logits, other.logits)
    assert len(list(cache.root.iterdir())) == 2


def test_no_temp_files_left_behind(cache, monkeypatch):
    model = tiny_model()
    for seed in range(3):
        get_predictions(model, eval_set(seed), cache)
    assert sorted(p.suffix for p in cache.root.iterdir()) == [".vc"] * 3
    assert not any(p.name.startswith(".") for p in cache.root.iterdir())

    real_fdopen = os.fdopen

    def failing_fdopen(fd, mode):
        f = real_fdopen(fd, mode)
        f.write(b"partial")
        f.close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    with pytest.warns(VcheckWarning, match="cannot write to the cache"):
        preds = get_predictions(model, eval_set(9), cache)
    assert not preds.from_cache and preds.logits.shape == (10, 3)  # the run goes on
    assert len(list(cache.root.iterdir())) == 3  # neither a temp file nor a half entry


def test_without_a_cache_nothing_is_written(tmp_path, monkeypatch):
    # Every place a default cache could go points into tmp_path, which must stay empty.
    monkeypatch.setenv("VCHECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    preds = get_predictions(tiny_model(), eval_set(), None)
    assert not preds.from_cache and preds.logits.shape == (10, 3)
    assert list(tmp_path.iterdir()) == []


def test_softmax_probs_rows_sum_to_one(cache):
    preds = get_predictions(tiny_model(), eval_set(), cache)
    probs = preds.probs
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(probs.argmax(axis=1), preds.logits.argmax(dim=1).numpy())


def test_sigmoid_probs_for_multi_label_models(cache):
    cfg = ModelCfg(**{**CFG.__dict__, "output_kind": "sigmoid"})
    preds = get_predictions(tiny_model(0, cfg), eval_set(), cache)
    expected = 1 / (1 + np.exp(-preds.logits.double().numpy()))
    np.testing.assert_allclose(preds.probs, expected, rtol=1e-12)
    assert not np.allclose(preds.probs.sum(axis=1), 1.0)


def test_batch_size_does_not_change_the_logits():
    model, data = tiny_model(), eval_set(n=13)
    one = get_predictions(model, data, None, batch_size=1).logits
    many = get_predictions(model, data, None, batch_size=64).logits
    torch.testing.assert_close(one, many)


def test_subset_keeps_rows_aligned(cache):
    preds = get_predictions(tiny_model(), eval_set(), cache)
    sub = preds.subset(np.array([7, 2]))
    assert sub.ids == ["s7", "s2"]
    assert torch.equal(sub.logits, preds.logits[[7, 2]])
    assert torch.equal(sub.labels, preds.labels[[7, 2]])


def test_progress_lines_are_written():
    lines = []
    get_predictions(tiny_model(), eval_set(n=10), None, batch_size=4, write=lines.append)
    assert lines and lines[-1].startswith("vcheck: tiny on toy: 10/10 (100%)")
