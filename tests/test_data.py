"""vcheck.data: Fashion-MNIST IDX files, stratified subsets, ImageFolder trees, eval sets."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcheck.data import fashion_mnist
from vcheck.data.evalset import TensorEvalSet, stratified_indices
from vcheck.data.fashion_mnist import find_split_files, load_fashion_mnist, read_idx
from vcheck.data.image_folder import folder_to_class, load_image_folder
from vcheck.errors import (
    CorruptArtefactError,
    InvalidArgument,
    MissingArtefactError,
    VcheckWarning,
)
from vcheck.models.base import ModelCfg
from vcheck.models.zoo import FASHION_MNIST_CLASSES

# -- Fashion-MNIST from IDX files ------------------------------------------------------


def idx_images(pixels):
    n, h, w = pixels.shape
    return struct.pack(">IIII", 2051, n, h, w) + pixels.astype(np.uint8).tobytes()


def idx_labels(labels):
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def fake_split(seed, n):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28)), rng.integers(0, 10, size=n)


def write_idx_files(folder, gz, test=None, train=None):
    """The four Fashion-MNIST files, gzipped or plain, in ``folder``; returns the test split."""
    folder.mkdir(parents=True, exist_ok=True)
    test = test or fake_split(0, 6)
    train = train or fake_split(1, 8)
    contents = {
        "train-images-idx3-ubyte": idx_images(train[0]),
        "train-labels-idx1-ubyte": idx_labels(train[1]),
        "t10k-images-idx3-ubyte": idx_images(test[0]),
        "t10k-labels-idx1-ubyte": idx_labels(test[1]),
    }
    for stem, data in contents.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return test


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Hide the system copy so that only the files a test writes are found."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")


@pytest.mark.parametrize(("gz", "sub"), [(True, ""), (False, "FashionMNIST/raw")])
def test_load_fashion_mnist_from_a_data_root(tmp_path, no_debian, gz, sub):
    root = tmp_path / "data"
    pixels, labels = write_idx_files(root / sub, gz)
    cache = tmp_path / "cache"
    ds = load_fashion_mnist("test", root, cache)
    assert len(ds) == 6
    assert ds.pixels.dtype == torch.uint8 and ds.pixels.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(ds.pixels[:, 0].numpy(), pixels)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    assert ds.labels.dtype == torch.int64
    assert ds.ids == [f"test-{i:05d}" for i in range(6)]
    assert ds.name == "fmnist_test" and ds.classes == FASHION_MNIST_CLASSES
    images = ds.images([0, 5])
    assert images.dtype == torch.float32 and images.shape == (2, 1, 28, 28)
    torch.testing.assert_close(images[1, 0], torch.from_numpy(pixels[5] / 255).float())
    train = load_fashion_mnist("train", root, cache)
    assert len(train) == 8 and train.ids[0] == "train-00000"
    assert not cache.exists()  # read in place: nothing unpacked into the cache


def test_fingerprint_is_stable_and_tracks_content(tmp_path, no_debian):
    write_idx_files(tmp_path / "a", gz=True)
    first = load_fashion_mnist("test", tmp_path / "a", tmp_path / "cache-a")
    again = load_fashion_mnist("test", tmp_path / "a", tmp_path / "cache-a")  # from the cache
    fresh = load_fashion_mnist("test", tmp_path / "a", tmp_path / "cache-b")
    assert first.fingerprint == again.fingerprint == fresh.fingerprint
    pixels, labels = fake_split(0, 6)
    pixels[3, 10, 10] ^= 1
    write_idx_files(tmp_path / "b", gz=True, test=(pixels, labels))
    changed = load_fashion_mnist("test", tmp_path / "b", tmp_path / "cache-c")
    assert changed.fingerprint != first.fingerprint
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx_files(tmp_path / "c", gz=False, test=(fake_split(0, 6)[0], labels))
    relabelled = load_fashion_mnist("test", tmp_path / "c", tmp_path / "cache-d")
    assert relabelled.fingerprint != first.fingerprint


def test_files_in_torchvisions_download_folder_are_used_in_place(tmp_path, no_debian):
    write_idx_files(tmp_path / "cache" / "FashionMNIST" / "raw", gz=False)
    assert len(load_fashion_mnist("test", None, tmp_path / "cache")) == 6


def test_missing_data_lists_where_it_looked_and_the_fix(tmp_path, no_debian):
    root = tmp_path / "data"
    write_idx_files(root, gz=True)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()  # the images alone are not enough
    with pytest.raises(MissingArtefactError) as info:
        find_split_files("test", root, tmp_path / "cache")
    message = str(info.value)
    for folder in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist"):
        assert str(folder) in message
    assert "t10k-labels-idx1-ubyte" in message and f"--data-root={root}" in message
    assert "drop it to use the installed copy" in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MissingArtefactError) as info:
        find_split_files("test", None, tmp_path / "cache")  # no data root: the usual places
    message = str(info.value)
    for folder in (tmp_path / "cache" / "FashionMNIST" / "raw", tmp_path / "no-debian"):
        assert str(folder) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-root" in message


def test_a_data_root_that_does_not_exist_never_falls_back_to_the_installed_copy(tmp_path):
    with pytest.raises(InvalidArgument, match=r"--data-root=.*typo does not exist"):
        load_fashion_mnist("test", tmp_path / "typo", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingArtefactError, match=r"no Fashion-MNIST test files .* --data-root="):
        load_fashion_mnist("test", tmp_path / "empty", tmp_path / "cache")


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"\x00" * 7, "longer than its header says"),
        (lambda b: b[:2], "not an IDX file"),
        (lambda b: b"\x00\x00\x08\x0d" + b[4:], "not an unsigned-byte IDX file"),
    ],
    ids=["truncated", "padded", "tiny", "float-idx"],
)
def test_damaged_idx_files_are_one_line_errors_naming_the_file(
    tmp_path, no_debian, gz, damage, message
):
    root = tmp_path / "data"
    write_idx_files(root, gz=False)
    target = root / "t10k-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    if gz:
        for path in list(root.iterdir()):
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
        target = root / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(CorruptArtefactError, match=message) as info:
        load_fashion_mnist("test", root, tmp_path / "cache")
    assert str(target) in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_gzip_stream_is_caught_by_its_checksum(tmp_path, no_debian):
    root = tmp_path / "data"
    write_idx_files(root, gz=True)
    target = root / "t10k-images-idx3-ubyte.gz"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # noise inside the compressed data
    target.write_bytes(bytes(blob))
    with pytest.raises(CorruptArtefactError, match="is damaged"):
        load_fashion_mnist("test", root, tmp_path / "cache")
    target.write_bytes(bytes(blob[:-9]))  # cut short
    with pytest.raises(CorruptArtefactError, match="is damaged"):
        read_idx(target)


def test_images_and_labels_of_different_lengths_are_refused(tmp_path, no_debian):
    root = tmp_path / "data"
    pixels, labels = fake_split(0, 6)
    write_idx_files(root, gz=True, test=(pixels, labels[:5]))
    with pytest.raises(CorruptArtefactError, match="one 28x28 image per label"):
        load_fashion_mnist("test", root, tmp_path / "cache")


@pytest.mark.skipif(
    not (fashion_mnist.DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_test_split_is_balanced(tmp_path):
    ds = load_fashion_mnist("test", None, tmp_path / "cache")
    assert len(ds) == 10_000 and ds.pixels.shape == (10_000, 1, 28, 28)
    assert torch.bincount(ds.labels, minlength=10).tolist() == [1000] * 10
    assert ds.ids[-1] == "test-09999"
    assert str(fashion_mnist.DEBIAN_DIR) in ds.source
    assert not (tmp_path / "cache").exists()  # read in place


# -- stratified subsets ----------------------------------------------------------------


def test_stratified_indices_are_seeded_sorted_and_keep_proportions():
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    a = stratified_indices(labels, 100, seed=0)
    assert a == stratified_indices(labels, 100, seed=0)
    assert a != stratified_indices(labels, 100, seed=1)
    assert a == sorted(a) and len(set(a)) == 100
    assert torch.bincount(labels[a], minlength=3).tolist() == [60, 30, 10]


def test_stratified_indices_keep_every_class_at_small_n():
    labels = torch.arange(10).repeat_interleave(100)
    chosen = stratified_indices(labels, 20, seed=3)
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [2] * 10


@pytest.mark.parametrize("n", [50, 51, 1000])
def test_stratified_indices_with_n_at_least_the_set_returns_all(n):
    labels = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(0))
    assert stratified_indices(labels, n, seed=0) == list(range(50))


@pytest.mark.parametrize(
    ("labels", "n"),
    [
        ([0] * 20 + [1], 10),  # a class with a single member cannot be stratified
        (list(range(10)) * 2, 5),  # fewer samples requested than classes
    ],
)
def test_stratified_indices_fall_back_for_tiny_classes(labels, n):
    labels = torch.tensor(labels)
    with pytest.warns(VcheckWarning, match="cannot stratify"):
        chosen = stratified_indices(labels, n, seed=4)
    with pytest.warns(VcheckWarning):
        assert chosen == stratified_indices(labels, n, seed=4)
    assert len(chosen) == n == len(set(chosen))
    assert chosen == sorted(chosen) and all(0 <= i < len(labels) for i in chosen)


# -- image folders ---------------------------------------------------------------------

CLASSES = ("cat", "dog", "golden retriever")


def test_folder_to_class_by_index_and_by_name():
    assert folder_to_class(["0", "2"], CLASSES, Path("/r")) == {"0": 0, "2": 2}
    assert folder_to_class(["Golden_Retriever", "dog"], CLASSES, Path("/r")) == {
        "Golden_Retriever": 2,
        "dog": 1,
    }
    assert folder_to_class(["golden-retriever", "1"], CLASSES, Path("/r")) == {
        "golden-retriever": 2,
        "1": 1,
    }


def test_folder_to_class_falls_back_to_sorted_order_for_one_folder_per_class():
    wnids = ["n02", "n01", "n03"]
    assert folder_to_class(wnids, CLASSES, Path("/r")) == {"n01": 0, "n02": 1, "n03": 2}


def test_sorted_order_is_not_used_when_some_folders_match_by_name():
    # Three folders for three classes, one named after a class: ambiguous, so an error
    # rather than a silent remapping of "golden_retriever" to index 1.
    with pytest.raises(InvalidArgument, match="'x'"):
        folder_to_class(["golden_retriever", "x", "y"], CLASSES, Path("/r"))


def test_folder_to_class_error_names_the_unmatched_folder():
    with pytest.raises(InvalidArgument) as info:
        folder_to_class(["cat", "n0211"], CLASSES, Path("/data/val"))
    message = str(info.value)
    assert "'n0211'" in message and "/data/val" in message and "'cat'" in message
    with pytest.raises(InvalidArgument, match="'3'"):  # index out of range
        folder_to_class(["3"], CLASSES, Path("/r"))


def make_tree(root, spec):
    """``spec``: {folder: [(size, colour), ...]} written as PNG files."""
    for folder, images in spec.items():
        (root / folder).mkdir(parents=True)
        for i, (size, colour) in enumerate(images):
            Image.new("RGB", size, colour).save(root / folder / f"img{i}.png")


TREE = {
    "cat": [((40, 30), (255, 0, 0)), ((20, 50), (0, 0, 0))],
    "golden_retriever": [((33, 33), (255, 255, 255))],
}


def test_load_image_folder_grayscale_at_input_size(tmp_path):
    make_tree(tmp_path / "set", TREE)
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(1, 28, 28))
    ds = load_image_folder("toy", tmp_path / "set", cfg)
    assert ds.ids == ["cat/img0.png", "cat/img1.png", "golden_retriever/img0.png"]
    assert ds.labels.tolist() == [0, 0, 2]
    assert ds.classes == CLASSES
    images = ds.images(range(3))
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    # PIL's luma of pure red: 299 * 255 // 1000 = 76.
    torch.testing.assert_close(images[0], torch.full((1, 28, 28), 76 / 255))
    assert images[1].max() == 0 and images[2].min() == 1
    batches = list(ds.batches(batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    torch.testing.assert_close(torch.cat(batches), images)


def test_load_image_folder_rgb_with_resize_and_crop(tmp_path):
    make_tree(tmp_path / "set", TREE)
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(3, 16, 12), resize=20)
    ds = load_image_folder("toy", tmp_path / "set", cfg)
    images = ds.images([0])
    assert images.shape == (1, 3, 16, 12)
    torch.testing.assert_close(images[0, 0], torch.ones(16, 12))  # red channel
    assert images[0, 1:].abs().max() == 0


def test_load_image_folder_finds_a_val_subfolder(tmp_path):
    make_tree(tmp_path / "imagenet" / "val", {"0": [((8, 8), (1, 2, 3))], "1": [((8, 8), 0)]})
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(3, 8, 8))
    ds = load_image_folder("val", tmp_path / "imagenet", cfg)
    assert ds.ids == ["0/img0.png", "1/img0.png"] and ds.labels.tolist() == [0, 1]


def test_load_image_folder_missing_or_empty(tmp_path):
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(3, 8, 8))
    with pytest.raises(MissingArtefactError, match=r"does not exist.*--data-root"):
        load_image_folder("x", tmp_path / "nope", cfg)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(MissingArtefactError, match="eval set 'x'"):
        load_image_folder("x", tmp_path / "empty", cfg)


def test_image_folder_fingerprint_changes_when_a_file_changes(tmp_path):
    make_tree(tmp_path / "set", TREE)
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(1, 8, 8))
    first = load_image_folder("toy", tmp_path / "set", cfg).fingerprint
    assert load_image_folder("toy", tmp_path / "set", cfg).fingerprint == first
    Image.new("RGB", (41, 30), (255, 0, 0)).save(tmp_path / "set" / "cat" / "img0.png")
    assert load_image_folder("toy", tmp_path / "set", cfg).fingerprint != first


# -- eval sets -------------------------------------------------------------------------


@pytest.fixture
def tensor_set():
    gen = torch.Generator().manual_seed(0)
    return TensorEvalSet(
        name="toy",
        ids=[f"s{i}" for i in range(12)],
        labels=torch.arange(12) % 3,
        classes=("a", "b", "c"),
        fingerprint="f" * 64,
        source="memory",
        pixels=torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8, generator=gen),
    )


def test_subset_fingerprints_differ_from_parent_and_are_deterministic(tensor_set):
    sub = tensor_set.subset([1, 4, 7])
    assert sub.fingerprint != tensor_set.fingerprint
    assert sub.fingerprint == tensor_set.subset([1, 4, 7]).fingerprint
    assert sub.fingerprint != tensor_set.subset([1, 4, 8]).fingerprint
    assert sub.fingerprint != tensor_set.subset([4, 1, 7]).fingerprint  # order matters
    assert sub.ids == ["s1", "s4", "s7"] and sub.labels.tolist() == [1, 1, 1]
    torch.testing.assert_close(sub.images([0, 2]), tensor_set.images([1, 7]))
    assert sub.name == "toy" and tensor_set.subset([0], name="one").name == "one"
    assert "3 of 12" in sub.source


def test_file_subset_keeps_paths_and_labels(tmp_path):
    make_tree(tmp_path / "set", TREE)
    cfg = ModelCfg(domain="toy", classes=CLASSES, input_size=(1, 8, 8))
    ds = load_image_folder("toy", tmp_path / "set", cfg)
    sub = ds.subset([2, 0])
    assert sub.ids == ["golden_retriever/img0.png", "cat/img0.png"]
    assert sub.labels.tolist() == [2, 0]
    assert sub.fingerprint not in (ds.fingerprint, ds.subset([0, 2]).fingerprint)
    torch.testing.assert_close(sub.images([0, 1]), ds.images([2, 0]))


def test_batches_cover_the_set_in_order(tensor_set):
    batches = list(tensor_set.batches(5))
    assert [len(b) for b in batches] == [5, 5, 2]
    torch.testing.assert_close(torch.cat(batches), tensor_set.pixels.float() / 255)


def test_metadata_has_one_row_per_sample(tensor_set):
    meta = tensor_set.metadata
    assert list(meta.columns) == ["id", "label", "class_name"]
    assert len(meta) == 12 and meta.loc[5, "class_name"] == "c" and meta.loc[5, "id"] == "s5"


def test_a_data_root_edited_in_place_is_read_afresh(tmp_path, no_debian):
    write_idx_files(tmp_path / "old", gz=True, test=fake_split(0, 6))
    old = load_fashion_mnist("test", tmp_path / "old", tmp_path / "cache")
    write_idx_files(tmp_path / "old", gz=True, test=fake_split(8, 4))  # edited in place
    new = load_fashion_mnist("test", tmp_path / "old", tmp_path / "cache")
    assert len(new) == 4 and new.fingerprint != old.fingerprint
