"""The one optimizer builder of every training loop (row, sequence and cell learners).

    schedule = warmup_cosine(3e-3, steps=2_000, warmup_steps=150, final_fraction=0.0)
    optimizer = build_optimizer("adamw", schedule, weight_decay=0.01, clip_norm=1.0)

"adam" is Adam, or AdamW where weight_decay > 0; "adamw" is AdamW whatever the
decay; "muon" is Keras' Muon on the hidden matrices with AdamW on the rest
(`muon_exclude` names layers whose matrices take AdamW too; `muon_attention`
also gives the attention projections' 3-D kernels Muon's step: `AttentionMuon`).
The configs keep their own names for these ("adam"/"muon" in `train.optimizer`
of a row run, "adamw"/"muon" in a cell run's); both map here.
"""

from __future__ import annotations

import keras
import numpy as np

OPTIMIZER_KINDS = ("adam", "adamw", "muon")


def warmup_cosine(learning_rate: float, steps: int, warmup_steps: int,
                  final_fraction: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """A linear warm-up over `warmup_steps` to `learning_rate`, then a cosine decay
    to learning_rate * final_fraction at `steps`."""
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(steps - warmup_steps, 1), alpha=final_fraction,
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)


def build_optimizer(kind: str, learning_rate, *, weight_decay: float = 0.0,
                    clip_norm: float = 0.0, epsilon: float | None = None,
                    ema_momentum: float = 0.0, muon_exclude=(),
                    muon_attention: bool = False) -> keras.optimizers.Optimizer:
    """The optimizer `kind` (OPTIMIZER_KINDS) at `learning_rate` (a float or a
    schedule), clipping gradients at a global norm of `clip_norm` (0 = none), with
    Adam's `epsilon` (None = Keras' default) and, where ema_momentum > 0, a moving
    average of the weights."""
    if kind not in OPTIMIZER_KINDS:
        raise ValueError(f"optimizer {kind!r} is not one of {OPTIMIZER_KINDS}")
    kwargs = dict(learning_rate=learning_rate)
    if clip_norm:
        kwargs["global_clipnorm"] = clip_norm
    if epsilon is not None:
        kwargs["epsilon"] = epsilon
    if ema_momentum > 0:
        kwargs.update(use_ema=True, ema_momentum=ema_momentum)
    if kind == "muon":
        muon = AttentionMuon if muon_attention else keras.optimizers.Muon
        if muon_exclude:
            kwargs["exclude_layers"] = list(muon_exclude)
        return muon(weight_decay=weight_decay, adam_weight_decay=weight_decay, **kwargs)
    if kind == "adamw" or weight_decay > 0:
        return keras.optimizers.AdamW(weight_decay=weight_decay, **kwargs)
    return keras.optimizers.Adam(**kwargs)


class AttentionMuon(keras.optimizers.Muon):
    """Keras' Muon with the attention projections as matrices too.

    Keras' Muon gives every variable that is not 2-D to AdamW, which leaves the
    3-D kernels of `MultiHeadAttention` (query/key/value (E, H, D), output
    (H, D, E)) to AdamW. Here those kernels take Muon's step on the matrix they
    are: (E, H*D) for query, key and value, (H*D, E) for the output.
    """

    @staticmethod
    def _is_attention_kernel(variable) -> bool:
        path = variable.path.lower()
        return len(variable.shape) == 3 and "attention" in path and path.endswith("kernel")

    @staticmethod
    def _matrix_shape(variable) -> tuple[int, int]:
        shape = tuple(variable.shape)
        if variable.path.lower().endswith("attention_output/kernel"):
            return int(np.prod(shape[:-1])), shape[-1]                  # (H*D, E)
        return shape[0], int(np.prod(shape[1:]))                         # (E, H*D)

    def _should_use_adamw(self, variable):
        if self._is_attention_kernel(variable):
            return False
        return super()._should_use_adamw(variable)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # the matrix each attention kernel is, by variable index (the update step
        # sees backend variables, without Keras' paths)
        self._matrix_shapes = {self._get_variable_index(v): self._matrix_shape(v)
                               for v in var_list if self._is_attention_kernel(v)}

    def _muon_update_step(self, gradient, variable, lr, m):
        shape = self._matrix_shapes.get(self._get_variable_index(variable))
        if shape is None:
            return super()._muon_update_step(gradient, variable, lr, m)
        self.assign_add(m, gradient + m * (self.momentum - 1))
        g = gradient + self.momentum * m if self.nesterov else m
        update = self.zeropower_via_newtonschulz5(keras.ops.reshape(g, shape), self.ns_steps)
        update = self.lr_adjust(lr * update)
        self.assign_sub(variable, keras.ops.reshape(update, variable.shape))
