"""Task augmentation: task id -> (projection A, label permutation rho).

Every task is derived from (seed, task id) with stateless TF random ops, so a
task is the same in every process and on every read, eagerly or inside
`tf.data`. The task id `FIXED_TASK_ID` (-1, never a sampled id) is the
curriculum's fixed task.

Example:
    >>> a = task_projection(0, 5, d_in=64, d_out=16)     # float32 [64, 16]
    >>> p = task_permutation(0, 5, num_classes=10)       # int32 [10]
"""

from __future__ import annotations

import tensorflow as tf

FIXED_TASK_ID = -1
UNSEEN_TASK_OFFSET = 2**40  # meta-test task ids start here; training ids are < 2**31
_PROJECTION_SALT = 0
_PERMUTATION_SALT = 1


def task_seed(seed, task_id, salt: int) -> tf.Tensor:
    """The stateless seed int64 [2] of one random draw of task `task_id`."""
    seed = tf.cast(seed, tf.int64)
    return tf.stack([seed * 4 + salt, tf.cast(task_id, tf.int64)])


def task_projection(seed, task_id, d_in: int, d_out: int) -> tf.Tensor:
    """Projection A float32 [d_in, d_out], A_ij ~ N(0, 1/d_in); x [.., d_in] @ A.

    With d_in == d_out == N_x this is the paper's A_ij ~ N(0, 1/N_x); the
    variance 1/d_in keeps unit-variance inputs at unit variance when a dataset
    of another size is projected to the model's input size.
    """
    a = tf.random.stateless_normal([d_in, d_out], seed=task_seed(seed, task_id, _PROJECTION_SALT))
    return a * tf.math.rsqrt(tf.cast(d_in, tf.float32))


def task_permutation(seed, task_id, num_classes: int) -> tf.Tensor:
    """Label permutation rho int32 [num_classes]: class c becomes rho[c]."""
    u = tf.random.stateless_uniform([num_classes], seed=task_seed(seed, task_id, _PERMUTATION_SALT))
    return tf.cast(tf.argsort(u), tf.int32)


def previous_label_tokens(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """one_hot(y_{j-1}) for every position j, zeros at j = 0.

    Args:
        labels: int [..., N] labels y_1..y_N.
    Returns:
        float32 [..., N, num_classes].
    """
    onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)  # [..., N, C]
    pad = tf.zeros_like(onehot[..., :1, :])                     # [..., 1, C]
    return tf.concat([pad, onehot[..., :-1, :]], axis=-2)


def make_tokens(x: tf.Tensor, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Tokens concat(x_j, one_hot(y_{j-1})): float32 [..., N, d + C]."""
    return tf.concat([tf.cast(x, tf.float32), previous_label_tokens(labels, num_classes)], axis=-1)


def augment_episode(x: tf.Tensor, labels: tf.Tensor, *, seed, task_id, input_size: int,
                    num_classes: int, fixed_projection=False, fixed_permutation=False):
    """Applies task `task_id` to raw episode data and builds the model features.

    Args:
        x: float32 [N, d_in] normalised inputs of the episode's examples.
        labels: int [N] base labels.
        fixed_projection, fixed_permutation: bool scalars; when true, the
            curriculum's fixed task supplies that part of the task.
    Returns:
        ({"tokens": float32 [N, input_size + C]}, targets int32 [N]).
    """
    d_in = x.shape[-1]
    proj_id = tf.where(fixed_projection, tf.constant(FIXED_TASK_ID, tf.int64),
                       tf.cast(task_id, tf.int64))
    perm_id = tf.where(fixed_permutation, tf.constant(FIXED_TASK_ID, tf.int64),
                       tf.cast(task_id, tf.int64))
    projected = tf.matmul(x, task_projection(seed, proj_id, d_in, input_size))  # [N, N_x]
    targets = tf.gather(task_permutation(seed, perm_id, num_classes), labels)   # [N]
    return {"tokens": make_tokens(projected, targets, num_classes)}, targets
