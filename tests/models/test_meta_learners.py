"""MAML and VSML (gpicl_tf.models.meta_learners): known answers, gradients, learning."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.config import ModelConfig, get_preset
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.models import build_model, state_size
from gpicl_tf.models.meta_learners import MAMLClassifier, VSMLCell

SCHEMA = EpisodeSchema(episode_length=8, input_size=6, num_classes=4)


def _episode(batch=2, length=8, seed=0, d=6, k=4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, length, d)).astype("float32"),
            rng.integers(0, k, (batch, length)).astype("int32"))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_linear_maml_is_gradient_descent_on_each_prefix():
    """One inner step from the learned init, by hand in numpy, position by position."""
    x, y = _episode(batch=1)
    layer = MAMLClassifier(4, hidden=0, steps=2, inner_lr=0.3)
    layer(x, y)
    rng = np.random.default_rng(1)
    w0, b0 = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=4).astype("float32")
    layer.w2.assign(w0)
    layer.b2.assign(b0)
    out = np.asarray(layer(x, y))[0]
    onehot = np.eye(4)[y[0]]
    for j in range(8):
        w, b = w0.astype("float64"), b0.astype("float64")
        for _ in range(2):
            if j:
                dz = (_softmax(x[0, :j] @ w + b) - onehot[:j]) / j
                w, b = w - 0.3 * x[0, :j].T @ dz, b - 0.3 * dz.sum(0)
        np.testing.assert_allclose(out[j], x[0, j] @ w + b, rtol=1e-4, atol=1e-4)


def test_hidden_layer_inner_gradient_equals_autodiff():
    """The hand-written backward pass of the one-hidden-layer classifier equals
    TensorFlow's gradient of the prefix loss."""
    x, y = _episode(batch=2)
    layer = MAMLClassifier(4, hidden=5, steps=1)
    layer(x, y)
    params = [tf.convert_to_tensor(p) for p in layer._initial(2, 8)]
    with tf.GradientTape() as tape:
        tape.watch(params)
        logits, cache = layer._forward(params, tf.constant(x))
        targets = tf.one_hot(y, 4)[:, None]
        weights = tf.reshape(tf.linalg.band_part(tf.ones((8, 8)), -1, 0)
                             - tf.eye(8), (1, 8, 8, 1)) / tf.reshape(
            tf.maximum(tf.range(8, dtype=tf.float32), 1.0), (1, 8, 1, 1))
        loss = tf.reduce_sum(-tf.reduce_sum(targets * tf.nn.log_softmax(logits), -1, True)
                             * weights)
    expected = tape.gradient(loss, params)
    dz = (tf.nn.softmax(logits) - targets) * weights
    for got, want in zip(layer._gradients(params, tf.constant(x), cache, dz), expected):
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-5)


def test_first_order_drops_the_second_order_terms():
    x, y = _episode()
    grads = {}
    for first_order in (False, True):
        keras.utils.set_random_seed(0)
        layer = MAMLClassifier(4, hidden=5, steps=2, first_order=first_order)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, layer(x, y)))
        grads[first_order] = tape.gradient(loss, layer.log_lr)
    assert grads[False] is not None and grads[True] is not None
    assert not np.allclose(grads[False].numpy(), grads[True].numpy())


def test_vsml_cell_predicts_before_it_reads_the_label():
    """The logits of step j do not depend on y_j; the state after it does."""
    cell = VSMLCell(3, 2, state=4)
    x = tf.constant([[0.5, -1.0, 2.0]])
    states = [tf.zeros((1, 24)), tf.zeros((1, 24))]
    out0, new0 = cell(tf.concat([x, [[1.0, 0.0]]], 1), states)
    out1, new1 = cell(tf.concat([x, [[0.0, 1.0]]], 1), states)
    np.testing.assert_allclose(out0.numpy(), out1.numpy())
    assert not np.allclose(new0[0].numpy(), new1[0].numpy())


@pytest.mark.parametrize("arch", ["maml", "vsml"])
def test_meta_learners_learn_a_fixed_task_family(arch):
    """A few dozen Adam steps on episodes of random linear 2-class tasks lower
    the loss late in the episode: they learn from the context."""
    keras.utils.set_random_seed(0)
    cfg = dataclasses.replace(get_preset("smoke").model, arch=arch, layout="paper",
                              maml_hidden=0, maml_steps=2, vsml_state=4)
    schema = EpisodeSchema(episode_length=16, input_size=4, num_classes=2)
    model = build_model(cfg, schema)
    rng = np.random.default_rng(0)

    def batch(n=32):
        x = rng.standard_normal((n, 16, 4)).astype("float32")
        w = rng.standard_normal((n, 4, 1))
        return x, (x @ w)[..., 0].__gt__(0).astype("int32")

    model.compile(optimizer=keras.optimizers.Adam(0.03),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    test_x, test_y = batch(256)

    def late_loss():
        logits = model({"inputs": test_x, "labels": test_y})
        return float(keras.losses.sparse_categorical_crossentropy(
            test_y[:, 8:], logits[:, 8:], from_logits=True).numpy().mean())

    before = late_loss()
    for _ in range(40):
        x, y = batch()
        model.train_on_batch({"inputs": x, "labels": y}, y)
    after = late_loss()
    assert after < min(before - 0.08, np.log(2) - 0.15), (before, after)


def test_state_sizes_and_their_errors():
    maml = ModelConfig(arch="maml", maml_hidden=0)
    assert state_size(maml, 100, input_size=64, num_classes=10) == 650
    assert state_size(dataclasses.replace(maml, maml_hidden=32), 100, 64, 10) == \
        64 * 32 + 32 + 32 * 10 + 10
    vsml = ModelConfig(arch="vsml", vsml_state=8)
    assert state_size(vsml, 5, 64, 10) == state_size(vsml, 500, 64, 10) == 2 * 64 * 10 * 8
    with pytest.raises(InvalidInputError, match="needs the episode's input_size"):
        state_size(vsml, 100)
    with pytest.raises(InvalidInputError, match="layout='pfn': the MAML reads the paper"):
        build_model(ModelConfig(arch="maml", layout="pfn"), SCHEMA)
    with pytest.raises(InvalidInputError, match="model.maml_steps=0"):
        ModelConfig(arch="maml", maml_steps=0)
