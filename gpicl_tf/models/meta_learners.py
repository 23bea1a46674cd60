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

VSML (Kirsch & Schmidhuber 2021). Every weight (a, c) of a dense layer from the
N_x inputs to the C outputs is a tiny LSTM with `vsml_state` units; all N_x * C
of them share one set of parameters. For each example each sub-LSTM ticks
twice: first it reads its forward message (input a's value x_{j,a}) and a zero
backward message, and the sum over a of its output message is output unit c's
logit (the prediction for y_j); then it reads x_{j,a} again with the backward
message of unit c, the error one_hot(y_j)_c - softmax(logits_j)_c, and only
updates its state. Learning lives in the N_x * C * 2 * vsml_state states, not
in the few shared parameters. One layer of sub-LSTMs (the paper's VSML stacks
several with messages between them; one is what this CPU trains in minutes).

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


@keras.saving.register_keras_serializable(package="gpicl_tf")
class VSMLCell(layers.Layer):
    """One example of a VSML layer (a recurrent cell over the episode).

    Input per step: [x_j (D), one_hot(y_j) (C)]; output: logits_j (C); state:
    the sub-LSTMs' (h, c), each (B, D * C * S) flattened.
    """

    def __init__(self, input_size: int, num_classes: int, state: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.num_classes, self.state = input_size, num_classes, state
        n = input_size * num_classes * state
        self.state_size = [n, n]
        self.output_size = num_classes

    def build(self, input_shape):
        s = self.state
        # Sub-LSTM inputs: forward message (x_a) and backward message (error_c).
        self.kernel = self.add_weight(name="kernel", shape=(2, 4 * s),
                                      initializer="glorot_uniform")
        self.recurrent = self.add_weight(name="recurrent_kernel", shape=(s, 4 * s),
                                         initializer="orthogonal")
        self.bias = self.add_weight(
            name="bias", shape=(4 * s,),
            initializer=keras.initializers.Constant([0.0] * s + [1.0] * s + [0.0] * 2 * s))
        self.out = self.add_weight(name="output_kernel", shape=(s, 1),
                                   initializer="glorot_uniform")

    def _tick(self, x, back, h, c, predict: bool):
        """One tick of all sub-LSTMs: x (B, D), back (B, C) or None, h and c
        (B, D, C, S); the logits (B, C) when `predict`."""
        z = (x[:, :, None, None] * self.kernel[0] + ops.matmul(h, self.recurrent)
             + self.bias)                                                       # (B, D, C, 4S)
        if back is not None:
            z = z + back[:, None, :, None] * self.kernel[1]
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        if not predict:
            return None, h, c
        messages = ops.sum(h, axis=1)                                           # (B, C, S)
        logits = ops.matmul(messages, self.out)[..., 0] / math.sqrt(self.input_size)
        return logits, h, c

    def call(self, inputs, states):
        d, k, s = self.input_size, self.num_classes, self.state
        x, target = inputs[:, :d], inputs[:, d:]
        h = ops.reshape(states[0], (-1, d, k, s))
        c = ops.reshape(states[1], (-1, d, k, s))
        logits, h1, c1 = self._tick(x, None, h, c, predict=True)                # predict y_j
        error = target - ops.softmax(logits, axis=-1)
        _, h2, c2 = self._tick(x, error, h1, c1, predict=False)                # learn from y_j
        return logits, [ops.reshape(h2, (-1, d * k * s)), ops.reshape(c2, (-1, d * k * s))]

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size,
                "num_classes": self.num_classes, "state": self.state}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class VSML(layers.Layer):
    """A VSML layer over an episode: x (B, N, D), y (B, N) -> logits (B, N, C)."""

    def __init__(self, input_size: int, num_classes: int, state: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.num_classes, self.state = input_size, num_classes, state
        self.rnn = layers.RNN(VSMLCell(input_size, num_classes, state, dtype=self.dtype_policy),
                              return_sequences=True, dtype=self.dtype_policy, name="rnn")

    def build(self, x_shape, y_shape=None):
        self.rnn.build((x_shape[0], x_shape[1], self.input_size + self.num_classes))

    def call(self, x, y):
        targets = ops.one_hot(ops.cast(y, "int32"), self.num_classes)
        return self.rnn(ops.concatenate([ops.cast(x, "float32"), targets], axis=-1))

    def compute_output_shape(self, x_shape, y_shape=None):
        return tuple(x_shape[:2]) + (self.num_classes,)

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size,
                "num_classes": self.num_classes, "state": self.state}


def vsml_state_size(input_size: int, num_classes: int, state: int) -> int:
    """A VSML layer's state: (h, c) of each of its input_size * num_classes sub-LSTMs."""
    return 2 * input_size * num_classes * state


def maml_state_size(input_size: int, num_classes: int, hidden: int) -> int:
    """MAML's state while it reads a task: the adapted classifier's parameters."""
    if hidden:
        return input_size * hidden + hidden + hidden * num_classes + num_classes
    return input_size * num_classes + num_classes
