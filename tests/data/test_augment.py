import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.data import augment


def test_projection_statistics_match_paper():
    n_x = 256
    a = augment.task_projection(0, 3, n_x, n_x).numpy()
    assert a.shape == (n_x, n_x) and a.dtype == np.float32
    assert abs(a.mean()) < 3 / n_x  # 65,536 draws: standard error 1/N_x**1.5
    assert a.var() == pytest.approx(1 / n_x, rel=0.03)


def test_projection_to_other_size_keeps_unit_variance():
    x = tf.random.stateless_normal([4000, 784], seed=[1, 2])
    y = x @ augment.task_projection(0, 11, 784, 64)
    assert float(tf.math.reduce_variance(y)) == pytest.approx(1.0, rel=0.1)


def test_tasks_differ_and_repeat():
    a1 = augment.task_projection(0, 1, 8, 8).numpy()
    assert np.array_equal(a1, augment.task_projection(0, 1, 8, 8).numpy())
    assert not np.allclose(a1, augment.task_projection(0, 2, 8, 8).numpy())
    assert not np.allclose(a1, augment.task_projection(1, 1, 8, 8).numpy())
    perms = {tuple(augment.task_permutation(0, t, 10).numpy()) for t in range(50)}
    assert len(perms) == 50


@pytest.mark.parametrize("task_id", [0, 7, 2**40 + 3, augment.FIXED_TASK_ID])
def test_permutation_is_valid(task_id):
    p = augment.task_permutation(5, task_id, 10).numpy()
    assert p.dtype == np.int32 and sorted(p.tolist()) == list(range(10))


def _fingerprint():
    a = augment.task_projection(3, 2**40 + 17, 64, 16).numpy()
    p = augment.task_permutation(3, 2**40 + 17, 10).numpy()
    return hashlib.sha256(a.tobytes() + p.tobytes()).hexdigest()


@pytest.mark.slow
def test_reproducible_across_processes():
    code = ("from tests.data.test_augment import _fingerprint; print(_fingerprint())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == _fingerprint()


def _episode(task_id, fixed_projection, fixed_permutation):
    x = tf.reshape(tf.range(5 * 6, dtype=tf.float32) / 30.0, [5, 6])
    labels = tf.constant([0, 1, 2, 3, 1])
    return augment.augment_episode(x, labels, seed=9, task_id=task_id, input_size=4,
                                   num_classes=4, fixed_projection=fixed_projection,
                                   fixed_permutation=fixed_permutation)


@pytest.mark.parametrize("fixed", [(False, False), (False, True), (True, True)])
def test_augment_same_eagerly_and_in_dataset_map(fixed):
    eager_f, eager_t = _episode(tf.constant(12, tf.int64), *fixed)
    ds = tf.data.Dataset.from_tensors(tf.constant(12, tf.int64)).map(
        lambda t: _episode(t, tf.constant(fixed[0]), tf.constant(fixed[1])))
    graph_f, graph_t = next(iter(ds))
    np.testing.assert_array_equal(eager_t, graph_t)
    np.testing.assert_array_equal(eager_f["labels"], eager_t)
    np.testing.assert_array_equal(eager_f["labels"], graph_f["labels"])
    np.testing.assert_allclose(eager_f["inputs"], graph_f["inputs"], rtol=1e-6, atol=1e-6)


def test_fixed_task_ignores_task_id():
    f1, t1 = _episode(1, True, True)
    f2, t2 = _episode(2, True, True)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(f1["inputs"], f2["inputs"])
    _, p1 = _episode(1, False, True)
    _, p2 = _episode(2, False, True)
    np.testing.assert_array_equal(p1, p2)  # same permutation, projections differ
    assert not np.array_equal(_episode(1, False, True)[0]["inputs"],
                              _episode(2, False, True)[0]["inputs"])
