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
from gpicl_tf.models.meta_learners import VSML, MAMLClassifier

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


def _vsml(d=3, k=2, state=4, **kw):
    layer = VSML(d, k, state=state, **kw)
    layer(*_episode(batch=1, length=2, d=d, k=k))
    return layer


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _vsml_by_hand(cell, x, y, c0):
    """The authors' equations in numpy for one episode x (N, D), y (N): logits (N, C)."""
    w = {v.name: np.asarray(v, np.float64) for v in cell.weights}
    d, k, s = cell.input_size, cell.num_classes, cell.state
    h, c, error, out = np.zeros((d, k, s)), c0.astype(np.float64), np.zeros(k), []
    for j in range(len(y)):
        drive = (x[j][:, None, None] * w["input_kernel"][0]
                 + error[None, :, None] * w["input_kernel"][1] + w["bias"])
        for _ in range(cell.micro_ticks):
            i, f, g, o = np.split(drive + h @ w["recurrent_kernel"], 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        m = h @ w["message_kernel"] + w["message_bias"]                       # (D, C, M)
        unit = (m[..., 0] - m.mean(-1)) / np.sqrt(m.var(-1) + 1e-5)
        z = (unit * w["output_scale"] + w["output_offset"]).mean(0)           # (C,)
        logits = cell.tanh_bound * np.tanh(z / cell.tanh_bound)
        error = _softmax(logits) - np.eye(k)[y[j]]
        out.append(logits)
    return np.array(out)


def test_vsml_equals_the_authors_equations_by_hand():
    """Two micro ticks on (x_j, e_{j-1}), a LayerNorm-ed message averaged over
    inputs, the tanh bound and e_j = softmax - one-hot, step by step in numpy."""
    layer = _vsml(d=3, k=2, state=4, message_size=3, tanh_bound=2.0)
    rng = np.random.default_rng(3)
    for v in layer.cell.weights:                   # away from the initial values
        v.assign(np.asarray(v) + rng.normal(0, 0.5, v.shape).astype("float32"))
    x, y = _episode(batch=1, length=6, d=3, k=2)
    c0 = np.asarray(layer.cell.initial_state(1)[1]).reshape(3, 2, 4)
    np.testing.assert_allclose(np.asarray(layer(x, y))[0],
                               _vsml_by_hand(layer.cell, x[0], y[0], c0), rtol=1e-4, atol=1e-5)


def test_vsml_gate_biases_start_at_minus_and_plus_five():
    """Gates i, f, g, o: the input gate's bias -5, the forget gate's +5."""
    bias = np.asarray(_vsml(state=3).cell.bias).reshape(4, 3)
    np.testing.assert_array_equal(bias, [[-5.0] * 3, [5.0] * 3, [0.0] * 3, [0.0] * 3])


def test_vsml_initial_cell_state_is_half_random_per_weight():
    """Half of each sub-LSTM's cell units start truncated-normal (stddev 1/sqrt(D)),
    a different value for every weight; the rest, h and the error start at zero.
    Each training episode draws anew; outside training every episode and call
    starts from the same draw."""
    cell = _vsml(d=40, k=5, state=6).cell
    h, c, error = (np.asarray(t) for t in cell.initial_state(3, training=True))
    c = c.reshape(3, 40, 5, 6)
    assert not h.any() and not error.any() and error.shape == (3, 5)
    assert not c[..., 3:].any()
    rand = c[..., :3]
    assert len(np.unique(rand)) == rand.size                     # every weight differs
    assert np.abs(rand).max() <= 2.0 / np.sqrt(40) + 1e-6         # truncated at 2 stddev
    assert 0.7 / np.sqrt(40) < rand.std() < 1.0 / np.sqrt(40)     # truncated N(0, 1/D)
    again = np.asarray(cell.initial_state(3, training=True)[1]).reshape(3, 40, 5, 6)
    assert not np.allclose(again, c)                              # a fresh draw per episode
    fixed = [np.asarray(cell.initial_state(n)[1]).reshape(n, 40, 5, 6) for n in (2, 4)]
    np.testing.assert_array_equal(fixed[0][0], fixed[0][1])
    np.testing.assert_array_equal(fixed[0][0], fixed[1][3])
    assert len(np.unique(fixed[0][0, ..., :3])) == 40 * 5 * 3


def test_vsml_random_start_breaks_the_symmetry_of_the_weights():
    """With every cell state starting at zero, the sub-LSTMs of one input are
    identical until the first error reaches them, so the first example's logits
    are equal for every class; the random half of the start tells them apart,
    as a random initialisation does a network's weights."""
    x, y = _episode(batch=4, length=1, d=3, k=3)
    same = _vsml(k=3, random_fraction=0.0)
    logits = np.asarray(same(x, y))[:, 0]                                 # (B, C)
    np.testing.assert_allclose(logits, logits[:, :1] * np.ones((1, 3)), atol=1e-6)
    differ = _vsml(k=3)
    differ.set_weights(same.get_weights())
    logits = np.asarray(differ(x, y))[:, 0]
    assert np.abs(logits[:, 0] - logits[:, 1]).min() > 1e-4


def test_vsml_averages_its_messages_over_the_inputs():
    """Each input given twice (2D inputs, the same parameters and start): the
    same logits, as a mean over inputs gives (a sum would double them)."""
    x, y = _episode(batch=2, length=5, d=3, k=2)
    once, twice = _vsml(d=3, random_fraction=0.0), _vsml(d=6, random_fraction=0.0)
    twice.set_weights(once.get_weights())
    np.testing.assert_allclose(np.asarray(twice(np.concatenate([x, x], -1), y)),
                               np.asarray(once(x, y)), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(once(x, y))).max() > 1e-3


def test_vsml_logits_are_bounded_by_tanh():
    x, y = _episode(batch=2, length=5, d=3, k=2)
    layer = _vsml(tanh_bound=3.0)
    layer.cell.output_scale.assign(1000.0)
    logits = np.asarray(layer(x, y))
    assert np.abs(logits).max() <= 3.0 and np.abs(logits).max() > 2.9


def test_vsml_feeds_the_error_back_at_the_next_step():
    """The state after step j holds softmax(logits_j) - one_hot(y_j), and the
    logits of step j + 1 are those of a cell that reads that error."""
    layer = _vsml(d=3, k=2)
    cell = layer.cell
    x, y = _episode(batch=2, length=2, d=3, k=2)
    states = cell.initial_state(2)
    onehot = np.eye(2, dtype="float32")[y]
    out0, states1 = cell(np.concatenate([x[:, 0], onehot[:, 0]], -1), states)
    np.testing.assert_allclose(np.asarray(states1[2]), _softmax(np.asarray(out0)) - onehot[:, 0],
                               rtol=1e-5, atol=1e-6)
    out1, _ = cell(np.concatenate([x[:, 1], onehot[:, 1]], -1), states1)
    np.testing.assert_allclose(np.asarray(layer(x, y)), np.stack([out0, out1], 1), rtol=1e-5,
                               atol=1e-6)
    # another error gives other logits at the next step
    flipped = [states1[0], states1[1], -states1[2]]
    other, _ = cell(np.concatenate([x[:, 1], onehot[:, 1]], -1), flipped)
    assert not np.allclose(np.asarray(other), np.asarray(out1))


def test_vsml_predicts_before_it_reads_the_label():
    """The logits of step j do not depend on y_j; those of step j + 1 do."""
    layer = _vsml(d=3, k=2)
    x, y = _episode(batch=1, length=6, d=3, k=2)
    base = np.asarray(layer(x, y))[0]
    for j in range(5):
        other = y.copy()
        other[0, j] = 1 - other[0, j]
        changed = np.asarray(layer(x, other))[0]
        np.testing.assert_array_equal(changed[:j + 1], base[:j + 1])
        assert not np.allclose(changed[j + 1], base[j + 1])


def test_vsml_config_round_trips_and_bad_settings_are_named():
    layer = _vsml(d=3, k=2, state=5, message_size=4, micro_ticks=3, tanh_bound=7.0,
                  random_fraction=0.25, seed=11)
    again = VSML.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    x, y = _episode(batch=2, length=4, d=3, k=2)
    again(x, y)
    again.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np.asarray(again(x, y)), np.asarray(layer(x, y)))
    for kw, match in ((dict(message_size=1), "message_size=1"),
                      (dict(random_fraction=1.5), "random_fraction=1.5"),
                      (dict(tanh_bound=0.0), "tanh_bound=0.0"), (dict(state=0), "state=0")):
        with pytest.raises(InvalidInputError, match=match):
            VSML(3, 2, **{"state": 4, **kw})


def test_vsml_trains_with_the_authors_settings():
    """The main job's VSML run: Adam at 1e-3, gradients clipped at a global norm
    of 25 (the other learners keep the preset's)."""
    from gpicl_tf import main_job

    runs = main_job.training_runs(get_preset("table1"))
    vsml, lstm = runs[("VSML", "vsml")].train, runs[("LSTM", "lstm")].train
    assert (vsml.optimizer, vsml.learning_rate, vsml.clip_norm) == ("adam", 1e-3, 25.0)
    assert lstm.clip_norm == get_preset("table1").train.clip_norm != 25.0


def _late_loss_before_and_after(arch, steps, batch_size, learning_rate, clip=None, **model):
    """Meta-trains `arch` on episodes of random linear 2-class tasks (4 inputs, 16
    examples); the loss over the last 8 positions of 256 episodes before and after."""
    keras.utils.set_random_seed(0)
    cfg = dataclasses.replace(get_preset("smoke").model, arch=arch, layout="paper", **model)
    schema = EpisodeSchema(episode_length=16, input_size=4, num_classes=2)
    net = build_model(cfg, schema)
    rng = np.random.default_rng(0)

    def batch(n):
        x = rng.standard_normal((n, 16, 4)).astype("float32")
        w = rng.standard_normal((n, 4, 1))
        return x, (x @ w)[..., 0].__gt__(0).astype("int32")

    net.compile(optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=clip),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    test_x, test_y = batch(256)

    def late_loss():
        logits = net({"inputs": test_x, "labels": test_y})
        return float(keras.losses.sparse_categorical_crossentropy(
            test_y[:, 8:], logits[:, 8:], from_logits=True).numpy().mean())

    before = late_loss()
    for _ in range(steps):
        x, y = batch(batch_size)
        net.train_on_batch({"inputs": x, "labels": y}, y)
    return before, late_loss()


def test_maml_learns_a_fixed_task_family():
    """A few dozen Adam steps lower the loss late in the episode: MAML learns
    from the context."""
    before, after = _late_loss_before_and_after("maml", 40, 32, 0.03, maml_hidden=0,
                                                maml_steps=2)
    assert after < min(before - 0.08, np.log(2) - 0.15), (before, after)


@pytest.mark.slow
def test_vsml_learns_a_fixed_task_family():
    """VSML leaves its loss plateau (ln 2) and learns from the context: 500 steps
    of 64 episodes, Adam 3e-2 clipped at 25 (it leaves the plateau after 200-350
    steps with seeds 0-2; about 11 s here)."""
    before, after = _late_loss_before_and_after("vsml", 500, 64, 0.03, clip=25.0,
                                                vsml_state=8)
    assert after < min(before - 0.08, np.log(2) - 0.15), (before, after)


def test_state_sizes_and_their_errors():
    maml = ModelConfig(arch="maml", maml_hidden=0)
    assert state_size(maml, 100, input_size=64, num_classes=10) == 650
    assert state_size(dataclasses.replace(maml, maml_hidden=32), 100, 64, 10) == \
        64 * 32 + 32 + 32 * 10 + 10
    vsml = ModelConfig(arch="vsml", vsml_state=8)
    assert state_size(vsml, 5, 64, 10) == state_size(vsml, 500, 64, 10) == 2 * 64 * 10 * 8 + 10
    with pytest.raises(InvalidInputError, match="needs the episode's input_size"):
        state_size(vsml, 100)
    with pytest.raises(InvalidInputError, match="layout='pfn': the MAML reads the paper"):
        build_model(ModelConfig(arch="maml", layout="pfn"), SCHEMA)
    with pytest.raises(InvalidInputError, match="model.maml_steps=0"):
        ModelConfig(arch="maml", maml_steps=0)
