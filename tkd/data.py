"""Datasets as tensors on the training device, and batch augmentation.

Design (after airbench): a whole split is one uint8 tensor ``(N, C, H, W)`` plus an int64 label
tensor ``(N,)``, moved to the device once. Batches are slices by index tensors
(:func:`batch_indices`), augmentation runs on the whole batch as tensor ops (:func:`augment`),
and the triplet negatives are index tensors as well (:mod:`tkd.miners`). There is no
``torch.utils.data.Dataset``/``DataLoader`` and no per-sample Python in the training path.

Files are read by small readers of the original on-disk formats (IDX for (Fashion-)MNIST, the
python-pickle batches for CIFAR); torchvision is used only to *download* them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DATASETS: tuple[str, ...] = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
IDX_FILES = {  # split -> (images file, labels file), names without ".gz"
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR = {  # name -> (folder, archive, train files, test file, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ["train"], "test", "meta",
                 b"fine_labels", b"fine_label_names"),
}  # fmt: skip


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not on this machine and could not be downloaded."""


@dataclass
class TensorSplit:
    """One split held as tensors: ``images`` (N, C, H, W) uint8, ``labels`` (N,) int64."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> TensorSplit:
        """The same split on ``device``."""
        return TensorSplit(self.images.to(device), self.labels.to(device))

    def subset(self, n: int, seed: int = 0) -> TensorSplit:
        """``n`` samples, as class-balanced as the split allows, drawn at random with ``seed``.

        Samples are taken round-robin over the classes of a seeded permutation, so every class
        gets ``n // classes`` or one more (while it has samples). Original order is kept.
        """
        if n >= len(self):
            return self
        chosen = self._balanced_positions(n, seed).to(self.labels.device)
        return TensorSplit(self.images[chosen], self.labels[chosen])

    def split_off(self, n: int, seed: int = 0) -> tuple[TensorSplit, TensorSplit]:
        """``(rest, held_out)``: ``n`` class-stratified samples held out (chosen as
        :meth:`subset` chooses them) and all the others; both keep the original order."""
        if not 0 < n < len(self):
            raise ValueError(f"cannot hold out {n} of {len(self)} samples: choose 0 < n < "
                             f"{len(self)}")
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[self._balanced_positions(n, seed)] = False
        held, keep = (~keep).to(self.labels.device), keep.to(self.labels.device)
        return (TensorSplit(self.images[keep], self.labels[keep]),
                TensorSplit(self.images[held], self.labels[held]))

    def _balanced_positions(self, n: int, seed: int) -> Tensor:
        """(n,) sorted CPU positions: round-robin over the classes of a seeded permutation."""
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=generator)
        labels = self.labels.cpu()[perm]
        by_class = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(perm)  # position of each permuted sample within its class
        rank[by_class] = torch.arange(len(perm)) - starts[labels[by_class]]
        return perm[torch.argsort(rank, stable=True)[:n]].sort().values


@dataclass
class Dataset:
    """A dataset's two splits and its shape facts."""

    name: str
    train: TensorSplit
    test: TensorSplit
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str]
    validation: TensorSplit | None = None

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every split on ``device``."""
        validation = None if self.validation is None else self.validation.to(device)
        return Dataset(self.name, self.train.to(device), self.test.to(device), self.num_classes,
                       self.in_channels, self.image_size, list(self.class_names), validation)

    def with_validation(self, n: int, seed: int = 0) -> Dataset:
        """This dataset with ``n`` class-stratified training samples (``seed``) moved into a
        validation split; the same ``n`` and ``seed`` always give the same split."""
        train, validation = self.train.split_off(n, seed)
        return Dataset(self.name, train, self.test, self.num_classes, self.in_channels,
                       self.image_size, list(self.class_names), validation)

    def identity(self) -> dict:
        """What identifies this data in a record: name, split sizes and a sha256 of each
        split's labels (any change of split or subset changes it)."""
        splits = {"train": self.train, "validation": self.validation, "test": self.test}
        return {"name": self.name,
                "sizes": {k: len(v) for k, v in splits.items() if v is not None},
                "labels_sha256": {k: hashlib.sha256(v.labels.cpu().numpy().tobytes())
                                  .hexdigest()[:16] for k, v in splits.items() if v is not None}}


def default_root() -> Path:
    """``$TKD_DATA`` if set, else ``~/.cache/tkd/data``."""
    return Path(os.environ.get("TKD_DATA") or Path.home() / ".cache" / "tkd" / "data")


def load_dataset(name: str, root: str | Path | None = None, download: bool = True) -> Dataset:
    """Load one of :data:`DATASETS` as uint8 tensors on the CPU.

    root: folder holding the data (default :func:`default_root`). ``download=False`` never
    touches the network. Raises ``ValueError`` for an unknown name or a malformed file and
    :class:`DatasetNotFoundError` (a ``FileNotFoundError``) when the files are missing.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root).expanduser() if root is not None else default_root()
    if name == "digits":
        return _load_digits()
    if name in ("fashion-mnist", "mnist"):
        return _load_mnist_like(name, root, download)
    return _load_cifar(name, root, download)


# ---------------------------------------------------------------- digits (scikit-learn) ----


def _load_digits() -> Dataset:
    """sklearn's 8x8 digits, values 0..16 scaled to 0..255; stratified 80/20 split, seed 0.

    Each class is permuted with ``numpy.random.default_rng(DIGITS_SPLIT_SEED)`` and its first
    ``round(0.2 * n_class)`` samples go to the test split, so the split never changes.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        is_test[members[: round(DIGITS_TEST_FRACTION * len(members))]] = True
    split = {
        part: TensorSplit(torch.from_numpy(images[mask].copy()), torch.from_numpy(labels[mask]))
        for part, mask in (("train", ~is_test), ("test", is_test))
    }
    return Dataset("digits", split["train"], split["test"], 10, 1, 8, [str(c) for c in range(10)])


# ------------------------------------------------------------ (Fashion-)MNIST, IDX files ----


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed or not) with ``ndim`` dimensions."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: broken gzip stream ({error})") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:  # two zero bytes, type 0x08 (ubyte), number of dimensions
        raise ValueError(f"{path}: bad IDX magic number {magic} (expected {0x0800 + ndim})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes of data) "
                         f"but the file holds {len(raw) - header} bytes (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_folder(folder: Path) -> dict[str, TensorSplit] | None:
    """The two splits from ``folder``; None if it holds none of the four files."""
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    paths = {stem: _idx_path(folder, stem) for stem in stems}
    if all(p is None for p in paths.values()):
        return None
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        raise ValueError(f"{folder}: incomplete MNIST-format folder, missing "
                         f"{', '.join(m + '.gz' for m in missing)}")
    splits = {}
    for split, (image_stem, label_stem) in IDX_FILES.items():
        images, labels = read_idx(paths[image_stem], 3), read_idx(paths[label_stem], 1)
        if images.shape[1:] != (28, 28):
            raise ValueError(f"{paths[image_stem]}: images are {images.shape[1:]}, not 28x28")
        if len(images) != len(labels):
            raise ValueError(f"{paths[label_stem]}: {len(labels)} labels for {len(images)} "
                             f"images in {paths[image_stem].name}")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{paths[label_stem]}: label {labels.max()} outside 0..9")
        splits[split] = TensorSplit(torch.from_numpy(images[:, None].copy()),
                                    torch.from_numpy(labels.astype(np.int64)))
    return splits


def _load_mnist_like(name: str, root: Path, download: bool) -> Dataset:
    folder = root / name
    tv_name = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
    candidates = [folder, folder / tv_name / "raw"]  # the second is where torchvision puts them
    if name == "fashion-mnist":
        candidates.append(DEBIAN_FASHION_MNIST)

    def search() -> dict[str, TensorSplit] | None:
        for candidate in candidates:
            splits = _read_idx_folder(candidate)
            if splits is not None:
                return splits
        return None

    splits = search()
    if splits is None and download:
        error = _try_download(tv_name, folder)
        splits = search()
        if splits is None:
            raise _not_found(name, candidates, folder, _idx_wanted(), error)
    if splits is None:
        raise _not_found(name, candidates, folder, _idx_wanted(), None)
    classes = FASHION_MNIST_CLASSES if name == "fashion-mnist" else [str(c) for c in range(10)]
    return Dataset(name, splits["train"], splits["test"], 10, 1, 28, list(classes))


def _idx_wanted() -> str:
    names = [stem + ".gz" for pair in IDX_FILES.values() for stem in pair]
    return "the four files " + ", ".join(names)


# ------------------------------------------------------------- CIFAR, python-pickle files ----


class _CifarUnpickler(pickle.Unpickler):
    """Reads CIFAR's python batches (dicts, lists, bytes, numbers and NumPy arrays) and refuses
    every other object: a crafted file cannot run code (``pickle.load`` would call whatever
    its ``GLOBAL`` opcodes name)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: CIFAR batches hold "
                                         "only dicts, lists, bytes and arrays")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: missing file in {path.parent}")
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a broken file
        raise ValueError(f"{path}: not a readable CIFAR pickle ({error})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a readable CIFAR pickle (holds a {type(batch).__name__}, "
                         "not a dict)")
    return batch


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> TensorSplit:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: expected keys b'data' and {label_key!r}, "
                         f"found {sorted(batch)}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside 0..{num_classes - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorSplit(images, torch.from_numpy(labels))


def _read_cifar_folder(name: str, folder: Path) -> tuple[TensorSplit, TensorSplit, list[str]]:
    _, _, train_files, test_file, meta_file, label_key, names_key = CIFAR[name]
    meta = _unpickle(folder / meta_file)
    if names_key not in meta:
        raise ValueError(f"{folder / meta_file}: no {names_key!r} entry")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    parts = [_read_cifar_batch(folder / f, label_key, len(class_names)) for f in train_files]
    train = TensorSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    test = _read_cifar_batch(folder / test_file, label_key, len(class_names))
    return train, test, class_names


def _extract(archive: Path, root: Path) -> None:
    """Extract ``archive`` into a temporary folder beside its target, then rename what it
    holds into ``root``: an interrupted extraction never leaves a half-written folder."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(tmp)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ValueError(f"{archive}: cannot extract archive ({error})") from None
        _move_into(Path(tmp), root)


def _move_into(source: Path, root: Path) -> None:
    """Rename every entry of ``source`` into ``root`` (same file system: atomic per entry);
    entries already in ``root`` are kept."""
    for entry in source.iterdir():
        target = root / entry.name
        if not target.exists():
            os.replace(entry, target)


def _load_cifar(name: str, root: Path, download: bool) -> Dataset:
    folder_name, archive_name, train_files, test_file, meta_file = CIFAR[name][:5]
    folder, archive = root / folder_name, root / archive_name
    error = None
    if not folder.is_dir() and archive.is_file():
        _extract(archive, root)
    if not folder.is_dir() and download:
        error = _try_download(name.upper(), root)
        if not folder.is_dir() and archive.is_file():
            _extract(archive, root)
    if not folder.is_dir():
        wanted = (f"the official archive {archive_name}, or its extracted folder {folder_name}/ "
                  f"with {', '.join([*train_files, test_file, meta_file])},")
        raise _not_found(name, [folder, archive], root, wanted, error)
    train, test, class_names = _read_cifar_folder(name, folder)
    return Dataset(name, train, test, len(class_names), 3, 32, class_names)


# --------------------------------------------------------------------- download / errors ----


def _try_download(tv_name: str, root: Path) -> Exception | None:
    """Let torchvision fetch ``tv_name`` into a temporary folder beside ``root``, then rename
    the files into ``root``; return the error instead of raising."""
    try:
        import torchvision.datasets

        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            getattr(torchvision.datasets, tv_name)(tmp, train=True, download=True)
            _move_into(Path(tmp), root)
    except Exception as error:  # noqa: BLE001 - no network, mirror down, bad checksum, ...
        return error
    return None


def _not_found(name: str, searched: list[Path], target: Path, files: str,
               error: Exception | None) -> DatasetNotFoundError:
    lines = [f"dataset {name!r} not found. Looked in:"]
    lines += [f"  {p}" for p in searched]
    if error is not None:
        lines.append(f"Download failed: {type(error).__name__}: {error}")
    lines.append(f"Put {files} in {target}")
    lines.append("Or pass download=True on a machine with internet access. Offline, 'digits' "
                 "always works, and 'fashion-mnist' does after installing Debian's package "
                 f"dataset-fashion-mnist (files in {DEBIAN_FASHION_MNIST}).")
    return DatasetNotFoundError("\n".join(lines))


# ------------------------------------------------------------------- batches on the device ----


def to_float(images: Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32 in [0, 1] (``ToTensor``; no normalisation)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return images.float().div_(255.0)


def augment(images: Tensor, generator: torch.Generator | None = None, padding: int = 4,
            flip: bool = True) -> Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    images: (B, C, H, W) float on any device. The draws are made on ``generator``'s device
    (then moved to ``images.device``) or, with ``generator=None``, by the default generator of
    ``images.device`` (what a captured CUDA graph needs). Returns (B, C, H, W).
    ``padding=0, flip=False`` returns the images unchanged.
    """
    b, _, h, w = images.shape
    where = generator.device if generator is not None else images.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=where)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=where)
    mirror = (torch.rand(b, generator=generator, device=where) < 0.5) & flip
    device = images.device
    dy, dx, mirror = dy.to(device), dx.to(device), mirror.to(device)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(mirror[:, None], w - 1 - cols, cols) + dx[:, None]  # (B, W)
    rows = torch.arange(h, device=device)[None, :] + dy[:, None]  # (B, H)
    batch = torch.arange(b, device=device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def batch_indices(n: int, batch_size: int, shuffle: bool,
                  generator: torch.Generator | None = None) -> list[Tensor]:
    """Index tensors (CPU int64) covering ``0..n-1`` once, ``batch_size`` each (last smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return list(order.split(batch_size))
