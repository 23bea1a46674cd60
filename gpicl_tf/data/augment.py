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
VALID_TASK_OFFSET = 2**41   # meta-validation task ids (tuning, model selection) start here
# Named, not "auto_select": auto picks Philox on CPU and GPU but another
# generator inside XLA, and tasks must be the same numbers wherever they are drawn.
RNG_ALG = "philox"
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
    a = tf.random.stateless_normal([d_in, d_out], seed=task_seed(seed, task_id, _PROJECTION_SALT),
                                   alg=RNG_ALG)
    return a * tf.math.rsqrt(tf.cast(d_in, tf.float32))


def task_permutation(seed, task_id, num_classes: int) -> tf.Tensor:
    """Label permutation rho int32 [num_classes]: class c becomes rho[c]."""
    u = tf.random.stateless_uniform([num_classes],
                                    seed=task_seed(seed, task_id, _PERMUTATION_SALT), alg=RNG_ALG)
    return tf.cast(tf.argsort(u), tf.int32)


def augment_episode(x: tf.Tensor, labels: tf.Tensor, *, seed, task_id, input_size: int,
                    num_classes: int, fixed_projection=False, fixed_permutation=False):
    """Applies task `task_id` to raw episode data and builds the model features.

    Args:
        x: float32 [N, d_in] normalised inputs of the episode's examples.
        labels: int [N] base labels.
        fixed_projection, fixed_permutation: bool scalars; when true, the
            curriculum's fixed task supplies that part of the task.
    Returns:
        ({"inputs": float32 [N, input_size], "labels": int32 [N]}, targets int32 [N]).
    """
    proj_id = tf.where(fixed_projection, tf.constant(FIXED_TASK_ID, tf.int64),
                       tf.cast(task_id, tf.int64))
    perm_id = tf.where(fixed_permutation, tf.constant(FIXED_TASK_ID, tf.int64),
                       tf.cast(task_id, tf.int64))
    projected = project_inputs(x, seed=seed, task_id=proj_id, input_size=input_size)
    targets = permute_labels(labels, seed=seed, task_id=perm_id, num_classes=num_classes)
    return {"inputs": projected, "labels": targets}, targets


def project_inputs(x: tf.Tensor, *, seed, task_id, input_size: int) -> tf.Tensor:
    """x float32 [N, d_in] @ the task's projection: float32 [N, input_size]."""
    return tf.matmul(x, task_projection(seed, task_id, x.shape[-1], input_size))


def permute_labels(labels: tf.Tensor, *, seed, task_id, num_classes: int) -> tf.Tensor:
    """Base labels int [N] through the task's permutation: int32 [N]."""
    return tf.gather(task_permutation(seed, task_id, num_classes), labels)
