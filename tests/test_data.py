"""Tests for tkd.data: loaders on real and hand-made files, augmentation, batches, negatives."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tkd import data
from tkd.data import (
    DATASETS,
    TensorSplit,
    augment,
    batch_indices,
    load_dataset,
    to_float,
)

# ------------------------------------------------------------------------ file writers ----


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
        arrays[prefix] = (images, labels)
    return arrays


def cifar_files(name: str, n_per_batch: int = 6, seed: int = 0) -> dict[str, dict]:
    """File name -> pickled dict, as in the official python archives (bytes keys)."""
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    label_key = b"labels" if name == "cifar10" else b"fine_labels"

    def batch() -> dict:
        return {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                label_key: rng.integers(0, classes, n_per_batch).tolist()}

    if name == "cifar10":
        files = {f"data_batch_{i}": batch() for i in range(1, 6)}
        files["test_batch"] = batch()
        files["batches.meta"] = {b"label_names": [f"class{c}".encode() for c in range(10)]}
    else:
        files = {"train": batch(), "test": batch()}
        files["meta"] = {b"fine_label_names": [f"fine{c}".encode() for c in range(100)],
                         b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)]}
    return files


CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_ARCHIVE = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def write_cifar_folder(root: Path, name: str, files: dict[str, dict]) -> Path:
    folder = root / CIFAR_FOLDER[name]
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        (folder / file_name).write_bytes(pickle.dumps(content))
    return folder


def write_cifar_archive(root: Path, name: str, files: dict[str, dict]) -> Path:
    archive = root / CIFAR_ARCHIVE[name]
    with tarfile.open(archive, "w:gz") as tar:
        for file_name, content in files.items():
            payload = pickle.dumps(content)
            info = tarfile.TarInfo(f"{CIFAR_FOLDER[name]}/{file_name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive


# ----------------------------------------------------------------------------- loaders ----


def test_unknown_name_lists_datasets():
    with pytest.raises(ValueError, match="cifar100"):
        load_dataset("imagenet")
    assert "digits" in DATASETS


def test_digits_offline_and_stable():
    ds = load_dataset("digits", download=False)
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 8)
    assert ds.class_names == [str(c) for c in range(10)]
    assert len(ds.train) + len(ds.test) == 1797
    assert abs(len(ds.test) - 0.2 * 1797) < 10
    for split in (ds.train, ds.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (1, 8, 8)
    assert ds.train.images.max() == 255 and ds.train.images.min() == 0
    assert torch.bincount(ds.test.labels, minlength=10).min() >= 30  # stratified
    again = load_dataset("digits")
    assert torch.equal(ds.train.labels, again.train.labels)
    assert torch.equal(ds.test.images, again.test.images)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed "
                           "(/usr/share/datasets/fashion-mnist missing)")
def test_fashion_mnist_from_debian(tmp_path):
    ds = load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert len(ds.train) == 60000 and len(ds.test) == 10000
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.image_size == 28


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_folder_in_root(tmp_path, name):
    arrays = write_idx_folder(tmp_path / name)
    ds = load_dataset(name, root=tmp_path, download=False)
    assert len(ds.train) == 30 and len(ds.test) == 10
    assert np.array_equal(ds.train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(ds.test.labels.numpy(), arrays["t10k"][1].astype(np.int64))


def test_idx_uncompressed_files(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder)
    for gz in folder.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert len(load_dataset("mnist", root=tmp_path, download=False).train) == 30


def test_truncated_idx_names_file(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder)
    target = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*truncated"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_idx_count_mismatch_and_missing_file(tmp_path):
    folder = tmp_path / "mnist"
    write_idx_folder(folder)
    labels = np.zeros(7, dtype=np.uint8)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: 7 labels for 10"):
        load_dataset("mnist", root=tmp_path, download=False)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="missing t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", root=tmp_path, download=False)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("form", ["folder", "archive"])
def test_cifar_from_official_format(tmp_path, name, form):
    files = cifar_files(name)
    writer = write_cifar_folder if form == "folder" else write_cifar_archive
    writer(tmp_path, name, files)
    ds = load_dataset(name, root=tmp_path, download=False)
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    test_name = "test_batch" if name == "cifar10" else "test"
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    assert ds.num_classes == (10 if name == "cifar10" else 100)
    assert (ds.in_channels, ds.image_size) == (3, 32)
    assert ds.class_names[1] == ("class1" if name == "cifar10" else "fine1")
    assert ds.train.images.shape == (6 * len(train_names), 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    first = files[train_names[0]][b"data"][0].reshape(3, 32, 32)  # channel-major rows
    assert np.array_equal(ds.train.images[0].numpy(), first)
    assert ds.test.labels.tolist() == files[test_name][label_key]


def test_cifar_wrong_shape_names_file(tmp_path):
    files = cifar_files("cifar10")
    files["data_batch_3"][b"data"] = np.zeros((6, 3000), dtype=np.uint8)
    write_cifar_folder(tmp_path, "cifar10", files)
    with pytest.raises(ValueError, match="data_batch_3.*3072"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_cifar_missing_offline_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "cifar-10-python.tar.gz" in message and "digits" in message


def test_download_failure_and_success_use_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Offline)
    with pytest.raises(FileNotFoundError, match="no network"):
        load_dataset("cifar100", root=tmp_path, download=True)

    class FakeDownload:  # torchvision leaves the archive and its extracted folder in root
        def __init__(self, root, train=True, download=False):
            write_cifar_archive(Path(root), "cifar100", cifar_files("cifar100"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeDownload)
    assert len(load_dataset("cifar100", root=tmp_path, download=True).test) == 6


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TKD_DATA", str(tmp_path))
    write_idx_folder(tmp_path / "mnist")
    assert data.default_root() == tmp_path
    assert len(load_dataset("mnist", download=False).test) == 10


# ------------------------------------------------------------------------- split tools ----


def test_split_subset_and_to():
    labels = torch.arange(100) % 4
    labels[:40] = 0  # class 0 over-represented
    split = TensorSplit(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels)
    small = split.subset(20, seed=3)
    assert len(small) == 20 and torch.bincount(small.labels).tolist() == [5, 5, 5, 5]
    assert torch.equal(small.labels, split.labels[small.images.view(-1).long()])
    assert torch.equal(small.images, split.subset(20, seed=3).images)
    assert split.subset(1000) is split
    assert split.to("cpu").images.shape == (100, 1, 1, 1)


def test_split_off_holds_out_a_stratified_part_and_keeps_the_rest():
    labels = torch.arange(100) % 4
    split = TensorSplit(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels)
    rest, held = split.split_off(20, seed=3)
    assert (len(rest), len(held)) == (80, 20)
    assert torch.bincount(held.labels).tolist() == [5, 5, 5, 5]
    ids = torch.cat([rest.images, held.images]).view(-1).long()
    assert torch.equal(ids.sort().values, torch.arange(100))  # disjoint and complete
    assert bool((rest.images.view(-1).diff() > 0).all())  # original order kept
    again, _ = split.split_off(20, seed=3)
    assert torch.equal(again.images, rest.images)
    assert not torch.equal(split.split_off(20, seed=4)[1].images, held.images)
    for n in (0, 100, 150):
        with pytest.raises(ValueError, match="hold out"):
            split.split_off(n)


def test_identity_names_the_splits_and_changes_with_them():
    digits = load_dataset("digits")
    held = digits.with_validation(100, seed=0)
    identity = held.identity()
    assert identity["name"] == "digits"
    assert identity["sizes"] == {"train": len(digits.train) - 100, "validation": 100,
                                 "test": len(digits.test)}
    assert set(identity["labels_sha256"]) == {"train", "validation", "test"}
    assert "validation" not in digits.identity()["sizes"]
    assert held.identity() == digits.with_validation(100, seed=0).identity()
    assert held.identity() != digits.with_validation(100, seed=1).identity()
    cut = digits.with_validation(100, seed=0)
    cut.train = cut.train.subset(500, seed=0)
    assert cut.identity()["labels_sha256"]["train"] != identity["labels_sha256"]["train"]


def test_to_float():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    out = to_float(images)
    assert out.dtype == torch.float32
    assert torch.allclose(out.view(-1), torch.tensor([0.0, 0.2, 1.0]))


def test_batch_indices_cover_once():
    for shuffle in (False, True):
        batches = batch_indices(103, 10, shuffle, torch.Generator().manual_seed(0))
        assert len(batches) == 11 and len(batches[-1]) == 3
        assert all(b.dtype == torch.int64 for b in batches)
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))
    assert torch.equal(torch.cat(batch_indices(5, 2, False, None)), torch.arange(5))


# ------------------------------------------------------------------------ augmentation ----


def test_augment_shape_determinism_identity_and_flip():
    images = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b)
    assert not torch.equal(a, augment(images, torch.Generator().manual_seed(2)))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment(images, gen, padding=0, flip=False), images)
    flipped = augment(images, torch.Generator().manual_seed(5), padding=0, flip=True)
    same = (flipped == images).flatten(1).all(1)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 16


def test_augment_without_generator_draws_from_the_devices_default_one():
    """What a captured CUDA graph needs: no host generator, the device's default stream."""
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(4)
    a = augment(images)
    torch.manual_seed(4)
    assert torch.equal(a, augment(images))
    assert not torch.equal(a, augment(images))  # the default stream moved on


def test_augment_crop_is_a_shifted_window_with_zero_padding():
    images = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5).repeat(64, 2, 1, 1)
    out = augment(images, torch.Generator().manual_seed(0), padding=2, flip=False)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(len(out)):  # each output is one of the 25 windows of the padded image
        windows = padded[i].unfold(1, 5, 1).unfold(2, 5, 1)  # (C, 5, 5, 5, 5)
        assert any(torch.equal(out[i], windows[:, y, x]) for y in range(5) for x in range(5))
    assert (out == 0).any()  # some shifts show the zero padding


# --------------------------------------------------------------------------- negatives ----
