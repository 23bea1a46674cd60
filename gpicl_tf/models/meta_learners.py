"""The paper's other meta-learners of Table 1: MAML and VSML, as sequence learners.

Both read an episode like the LSTM and the Transformer, inputs (B, N, N_x) and
labels (B, N), and return logits (B, N, C): the prediction for y_j from
x_1..x_j and y_1..y_{j-1}. They are trained by the same pipeline on the same
episodes (`build_model(config, schema)` with `model.arch` "maml" or "vsml").

MAML (Finn, Abbeel, Levine 2017). The meta-learned parameters are the
initialisation of a small classifier (linear, or one ReLU hidden layer of
`maml_hidden` units) and one learning rate per inner step. For every position
j the classifier takes `maml_steps` steps of full-batch gradient descent on the
mean cross-entropy of the j - 1 examples before it, then predicts x_j; all
positions adapt at once (a weight set per position). The inner gradients are
written out in `keras.ops` (backpropagation through the small classifier by
hand), so the meta-gradient flows through them exactly (second order) on any
backend; `maml_first_order` stops it at each inner gradient (first-order MAML).

VSML (Kirsch & Schmidhuber 2021), as the authors' code builds it
(louiskirsch/vsml-neurips2021: models.py SubRNN and VSMLRNN, recurrent.py
CustomLSTM; their default and backprop configs). Every weight (a, c) of one dense
layer from the N_x inputs to the C outputs is a tiny LSTM with `vsml_state`
units; all N_x * C of them share one set of parameters, and learning lives in
their states. At step j each sub-LSTM reads its forward message (input a's
value x_{j,a}) and its backward message (output c's error of the previous
step, e_{j-1,c} = softmax(logits_{j-1})_c - one_hot(y_{j-1})_c, zero at j = 0)
and ticks twice on them; its forward message (a linear map of h, LayerNorm-ed)
averaged over the inputs a (not summed) is output c's logit, bounded by
100 tanh(z / 100). The forget gate starts at +5 and the input gate at -5. Half
of each sub-LSTM's cell units start random (truncated normal, stddev
1 / sqrt(N_x), drawn per weight and per episode), the rest and h at zero, so the
weights differ from the first example on; outside training every episode starts
from one fixed draw, so answers are deterministic. The authors' other choices
kept here: 16 units (`vsml_state`), messages of 8, one layer (their deeper
variant is a separate experiment), the loss averaged over every prediction.

Example:
    >>> import numpy as np
    >>> layer = MAMLClassifier(num_classes=3, hidden=0, steps=2)
    >>> x = np.random.default_rng(0).normal(size=(1, 5, 4)).astype("float32")
    >>> tuple(layer(x, np.array([[0, 1, 2, 0, 1]], "int32")).shape)
    (1, 5, 3)
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from gpicl_tf.errors import InvalidInputError


def _prefix_weights(length):
    """(1, N, N, 1): entry (j, i) is 1 / j for i < j (the mean over the j
    examples before position j) and 0 elsewhere (position 0 sees no example)."""
    idx = ops.arange(length)
    before = ops.cast(ops.less(idx[None, :], idx[:, None]), "float32")        # (N, N)
    count = ops.maximum(ops.sum(before, axis=1, keepdims=True), 1.0)
    return (before / count)[None, :, :, None]


@keras.saving.register_keras_serializable(package="gpicl_tf")
class MAMLClassifier(layers.Layer):
    """MAML over every prefix of an episode: x (B, N, D), y (B, N) -> logits (B, N, C)."""

    def __init__(self, num_classes: int, hidden: int = 0, steps: int = 5,
                 inner_lr: float = 0.5, first_order: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.hidden, self.steps = num_classes, hidden, steps
        self.inner_lr, self.first_order = inner_lr, first_order

    def build(self, x_shape, y_shape=None):
        d, c, h = int(x_shape[-1]), self.num_classes, self.hidden
        if h:
            self.w1 = self.add_weight(name="w1", shape=(d, h), initializer="he_normal")
            self.b1 = self.add_weight(name="b1", shape=(h,), initializer="zeros")
            self.w2 = self.add_weight(name="w2", shape=(h, c), initializer="glorot_uniform")
        else:
            self.w2 = self.add_weight(name="w", shape=(d, c), initializer="zeros")
        self.b2 = self.add_weight(name="b", shape=(c,), initializer="zeros")
        self.log_lr = self.add_weight(
            name="log_inner_lr", shape=(self.steps,),
            initializer=keras.initializers.Constant(math.log(self.inner_lr)))

    def _initial(self, batch, length):
        """The meta-learned initialisation, one copy per (episode, position)."""
        params = ([self.w1, self.b1] if self.hidden else []) + [self.w2, self.b2]
        return [ops.broadcast_to(p, (batch, length) + tuple(p.shape)) for p in params]

    def _forward(self, params, x):
        """Logits (B, N, N_i, C) of the N position-wise classifiers on the examples
        x (B, N_i, D), and what the backward pass needs."""
        if self.hidden:
            w1, b1, w2, b2 = params
            pre = ops.einsum("bid,bjdh->bjih", x, w1) + b1[:, :, None, :]
            act = ops.relu(pre)
            return ops.einsum("bjih,bjhc->bjic", act, w2) + b2[:, :, None, :], (pre, act)
        w, b = params
        return ops.einsum("bid,bjdc->bjic", x, w) + b[:, :, None, :], None

    def _gradients(self, params, x, cache, dz):
        """Gradients of sum_i dz-weighted cross-entropy with respect to `params`,
        given dz = d loss / d logits (B, N, N_i, C)."""
        gb2 = ops.sum(dz, axis=2)
        if not self.hidden:
            return [ops.einsum("bid,bjic->bjdc", x, dz), gb2]
        _, _, w2, _ = params
        pre, act = cache
        dact = ops.einsum("bjic,bjhc->bjih", dz, w2) * ops.cast(ops.greater(pre, 0.0), dz.dtype)
        return [ops.einsum("bid,bjih->bjdh", x, dact), ops.sum(dact, axis=2),
                ops.einsum("bjih,bjic->bjhc", act, dz), gb2]

    def call(self, x, y):
        x = ops.cast(x, "float32")
        shape = ops.shape(x)
        batch, length = shape[0], shape[1]
        targets = ops.one_hot(ops.cast(y, "int32"), self.num_classes)[:, None]  # (B, 1, N, C)
        weights = _prefix_weights(length)
        params = self._initial(batch, length)
        for k in range(self.steps):
            logits, cache = self._forward(params, x)
            dz = (ops.softmax(logits, axis=-1) - targets) * weights
            grads = self._gradients(params, x, cache, dz)
            if self.first_order:
                grads = [ops.stop_gradient(g) for g in grads]
            lr = ops.exp(self.log_lr[k])
            params = [p - lr * g for p, g in zip(params, grads)]
        if self.hidden:
            w1, b1, w2, b2 = params
            act = ops.relu(ops.einsum("bjd,bjdh->bjh", x, w1) + b1)
            return ops.einsum("bjh,bjhc->bjc", act, w2) + b2
        w, b = params
        return ops.einsum("bjd,bjdc->bjc", x, w) + b

    def compute_output_shape(self, x_shape, y_shape=None):
        return tuple(x_shape[:2]) + (self.num_classes,)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "hidden": self.hidden,
                "steps": self.steps, "inner_lr": self.inner_lr,
                "first_order": self.first_order}


def _check_vsml(input_size, num_classes, state, message_size, micro_ticks, tanh_bound,
                random_fraction):
    """Raises InvalidInputError naming the first VSML setting it cannot use."""
    for name, value, low in (("input_size", input_size, 1), ("num_classes", num_classes, 2),
                             ("state", state, 1), ("message_size", message_size, 2),
                             ("micro_ticks", micro_ticks, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidInputError(f"VSML {name}={value!r} must be an integer >= {low}")
    if not tanh_bound > 0:
        raise InvalidInputError(f"VSML tanh_bound={tanh_bound!r} must be > 0")
    if not 0.0 <= random_fraction <= 1.0:
        raise InvalidInputError(f"VSML random_fraction={random_fraction!r} is not in [0, 1]")


@keras.saving.register_keras_serializable(package="gpicl_tf")
class VSMLCell(layers.Layer):
    """One example of a VSML layer (a recurrent cell over the episode).

    Axes: B episodes, D = input_size inputs, C = num_classes outputs, S = state
    units of each sub-LSTM, M = message_size. Input per step: [x_j (D),
    one_hot(y_j) (C)]; output: logits_j (C); state: the sub-LSTMs' h and c, each
    (B, D * C * S) flattened, and the error e_{j-1} (B, C) of the previous step.
    The logits of step j are computed from x_j and e_{j-1} before y_j is read;
    y_j only sets the error the next step reads.

    Args:
        input_size: D. num_classes: C (>= 2).
        state: S, units of each sub-LSTM (the authors': 16).
        message_size: M, units of each sub-LSTM's forward message (>= 2: it is
            LayerNorm-ed before its first unit is read out; the authors': 8).
        micro_ticks: LSTM ticks per example on the same messages (the authors': 2).
        tanh_bound: logits are bound * tanh(z / bound) (the authors': 100).
        random_fraction: the share of each sub-LSTM's cell units that start
            random (the authors': 0.5); the rest and h start at zero.
        seed: seeds the fresh draw of each training episode's random cell units
            and the fixed draw every episode starts from outside training.
    """

    def __init__(self, input_size: int, num_classes: int, state: int = 8,
                 message_size: int = 8, micro_ticks: int = 2, tanh_bound: float = 100.0,
                 random_fraction: float = 0.5, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        _check_vsml(input_size, num_classes, state, message_size, micro_ticks, tanh_bound,
                    random_fraction)
        self.input_size, self.num_classes, self.state = input_size, num_classes, state
        self.message_size, self.micro_ticks = message_size, micro_ticks
        self.tanh_bound, self.random_fraction, self.seed = tanh_bound, random_fraction, seed
        n = input_size * num_classes * state
        self.state_size = [n, n, num_classes]
        self.output_size = num_classes
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        s, m = self.state, self.message_size
        # The authors' sub-LSTM is one linear map of [forward message (M), backward
        # message (M), h (S)]; only unit 0 of each incoming message is non-zero
        # (x_a and e_c), so its kernel is these two rows and the recurrent one.
        lstm_init = keras.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(2 * m + s))
        self.input_kernel = self.add_weight(name="input_kernel", shape=(2, 4 * s),
                                            initializer=lstm_init)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(s, 4 * s),
                                                initializer=lstm_init)
        # Gates i, f, g, o: input gate -5 and forget gate +5, so a state is kept
        # and changed slowly at the start of meta-training.
        self.bias = self.add_weight(
            name="bias", shape=(4 * s,),
            initializer=keras.initializers.Constant([-5.0] * s + [5.0] * s + [0.0] * 2 * s))
        self.message_kernel = self.add_weight(
            name="message_kernel", shape=(s, m),
            initializer=keras.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(s)))
        self.message_bias = self.add_weight(name="message_bias", shape=(m,),
                                            initializer="zeros")
        # The LayerNorm's scale and offset of the message unit read out (the
        # other units' are never used by one layer).
        self.output_scale = self.add_weight(name="output_scale", shape=(), initializer="ones")
        self.output_offset = self.add_weight(name="output_offset", shape=(),
                                             initializer="zeros")

    def initial_state(self, batch_size, training=False):
        """[h, c, e] at the start of an episode: h, e and the last (1 -
        random_fraction) of each sub-LSTM's cell units zero; its first units
        truncated-normal with stddev 1 / sqrt(D), one value per weight, so the
        D * C weights differ. Drawn afresh for every training episode; outside
        training every episode starts from the same draw of `seed`."""
        d, k, s = self.input_size, self.num_classes, self.state
        r = int(s * self.random_fraction)
        std = 1.0 / math.sqrt(d)
        if training:
            rand = keras.random.truncated_normal((batch_size, d, k, r), stddev=std,
                                                 seed=self.seed_generator)
        else:
            rand = ops.broadcast_to(
                keras.random.truncated_normal((1, d, k, r), stddev=std, seed=self.seed),
                (batch_size, d, k, r))
        c = ops.concatenate([rand, ops.zeros((batch_size, d, k, s - r))], axis=-1)
        return [ops.zeros((batch_size, d * k * s)), ops.reshape(c, (batch_size, d * k * s)),
                ops.zeros((batch_size, k))]

    def get_initial_state(self, batch_size):
        return self.initial_state(batch_size, training=False)

    def _ticks(self, x, error, h, c):
        """`micro_ticks` LSTM ticks of all sub-LSTMs on forward messages x (B, D)
        and backward messages error (B, C); h and c (B, D, C, S)."""
        drive = (x[:, :, None, None] * self.input_kernel[0]
                 + error[:, None, :, None] * self.input_kernel[1] + self.bias)  # (B, D, C, 4S)
        for _ in range(self.micro_ticks):
            i, f, g, o = ops.split(drive + ops.matmul(h, self.recurrent_kernel), 4, axis=-1)
            c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
            h = ops.sigmoid(o) * ops.tanh(c)
        return h, c

    def _logits(self, h):
        """Each sub-LSTM's forward message (B, D, C, M), LayerNorm-ed; unit 0
        averaged over the D inputs is output c's logit, tanh-bounded: (B, C)."""
        message = ops.matmul(h, self.message_kernel) + self.message_bias        # (B, D, C, M)
        mean = ops.mean(message, axis=-1)
        var = ops.var(message, axis=-1)
        unit = (message[..., 0] - mean) * ops.rsqrt(var + 1e-5)                 # (B, D, C)
        unit = unit * self.output_scale + self.output_offset
        z = ops.mean(unit, axis=1)                                              # (B, C)
        return self.tanh_bound * ops.tanh(z / self.tanh_bound)

    def call(self, inputs, states):
        d, k, s = self.input_size, self.num_classes, self.state
        x, target = inputs[:, :d], inputs[:, d:]
        h = ops.reshape(states[0], (-1, d, k, s))
        c = ops.reshape(states[1], (-1, d, k, s))
        h, c = self._ticks(x, states[2], h, c)
        logits = self._logits(h)                                  # predicts y_j from e_{j-1}
        error = ops.softmax(logits, axis=-1) - target              # read at step j + 1
        return logits, [ops.reshape(h, (-1, d * k * s)), ops.reshape(c, (-1, d * k * s)), error]

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size,
                "num_classes": self.num_classes, "state": self.state,
                "message_size": self.message_size, "micro_ticks": self.micro_ticks,
                "tanh_bound": self.tanh_bound, "random_fraction": self.random_fraction,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class VSML(layers.Layer):
    """A VSML layer over an episode: x (B, N, D), y (B, N) -> logits (B, N, C).

    Args: those of `VSMLCell`.
    """

    def __init__(self, input_size: int, num_classes: int, state: int = 8,
                 message_size: int = 8, micro_ticks: int = 2, tanh_bound: float = 100.0,
                 random_fraction: float = 0.5, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.num_classes, self.state = input_size, num_classes, state
        cell = VSMLCell(input_size, num_classes, state, message_size, micro_ticks, tanh_bound,
                        random_fraction, seed, dtype=self.dtype_policy)
        self.rnn = layers.RNN(cell, return_sequences=True, dtype=self.dtype_policy, name="rnn")

    @property
    def cell(self) -> VSMLCell:
        return self.rnn.cell

    def build(self, x_shape, y_shape=None):
        self.rnn.build((x_shape[0], x_shape[1], self.input_size + self.num_classes))

    def call(self, x, y, training=None):
        x = ops.cast(x, "float32")
        targets = ops.one_hot(ops.cast(y, "int32"), self.num_classes)
        start = self.cell.initial_state(ops.shape(x)[0], training=bool(training))
        return self.rnn(ops.concatenate([x, targets], axis=-1), initial_state=start)

    def compute_output_shape(self, x_shape, y_shape=None):
        return tuple(x_shape[:2]) + (self.num_classes,)

    def get_config(self):
        cell = self.cell.get_config()
        return {**super().get_config(), **{key: cell[key] for key in (
            "input_size", "num_classes", "state", "message_size", "micro_ticks",
            "tanh_bound", "random_fraction", "seed")}}


def vsml_state_size(input_size: int, num_classes: int, state: int) -> int:
    """A VSML layer's state: (h, c) of each of its input_size * num_classes
    sub-LSTMs and the error of the previous step (num_classes)."""
    return 2 * input_size * num_classes * state + num_classes


def maml_state_size(input_size: int, num_classes: int, hidden: int) -> int:
    """MAML's state while it reads a task: the adapted classifier's parameters."""
    if hidden:
        return input_size * hidden + hidden + hidden * num_classes + num_classes
    return input_size * num_classes + num_classes
