"""Episodes built on the device, inside the compiled train step.

The host ships only what a record holds (example indices, task id) and the
curriculum's bias flag per episode (`record_dataset`); `EpisodeBuilder` gathers
the base examples from tables resident on the device, normalises them, draws
each task's projection and permutation from (seed, task id) with stateless ops
and applies them: the same numbers as the host pipeline
(`pipeline.make_dataset`) for the same records and bias
(tests/data/test_device_episodes.py). Used by the custom training loop
(`train.episodes_on_device=true`); evaluation, export and the estimator keep
receiving plain (x, y) episodes.

Example:
    >>> builder = EpisodeBuilder(episodes, "train")                     # doctest: +SKIP
    >>> records = next(iter(record_dataset(episodes, "train", 64)))       # doctest: +SKIP
    >>> features, targets = builder(records)                             # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from gpicl_tf.data import augment, kinds, pipeline, schema as schema_lib
from gpicl_tf.data.kinds.base import base_tables, bias_flag
from gpicl_tf.errors import InvalidInputError

INDICES, TASK_ID, BIASED = "indices", "task_id", "biased"


def record_dataset(episodes: pipeline.EpisodeSet, split: str, batch_size: int, *,
                   shuffle: bool = True, repeat: bool = True,
                   bias: tf.Variable | None = None, seed: int = 0,
                   shuffle_buffer: int = 2048, skip: int = 0,
                   shard: tuple[int, int] = (1, 0), prefetch: int = 4) -> tf.data.Dataset:
    """Batches of {"indices": int64 [B, N], "task_id": int64 [B], "biased": bool [B]}:
    the records in the host pipeline's order (same shuffle, skip and shards), with
    the bias flag the host pipeline would use. Parsed per batch (`parse_example`)."""
    if not kinds.of(episodes.schema).device_episodes:
        raise InvalidInputError(f"{episodes.directory} holds {episodes.schema.task} episodes; "
                                "device-side construction builds indexed ones only")
    if episodes.mixture or episodes.schema.stored_dim:
        raise InvalidInputError(
            f"{episodes.directory} holds {'a mixture' if episodes.mixture else 'stored values'}"
            "; device-side construction gathers from one dataset's base tables (train with "
            "train.episodes_on_device=false)")
    files = pipeline.split_files(episodes, split, shard)
    spec = episodes.schema.record_spec()
    ds = pipeline.record_stream(episodes, files, shuffle=shuffle, repeat=repeat, seed=seed,
                                shuffle_buffer=shuffle_buffer, skip=skip)
    ds = ds.batch(batch_size, drop_remainder=True)
    start = tf.constant(skip, tf.int64)

    def parse(batch_number, raw):
        rec = tf.io.parse_example(raw, spec)
        positions = start + batch_number * batch_size + tf.range(batch_size, dtype=tf.int64)
        return {INDICES: rec["indices"], TASK_ID: rec["task_id"],
                BIASED: bias_flag(positions, batch_size, bias)}

    ds = ds.enumerate().map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(prefetch)


class EpisodeBuilder(tf.Module):
    """Builds (features, targets) from record batches on the device.

    Args:
        episodes: the episode set whose base data and seed define the tasks.
        split: the split whose base data split the records index.
        bias_mode: "permutation" (a biased episode takes the fixed permutation)
            or "task" (the fixed projection too), as the host pipeline.
    """

    def __init__(self, episodes: pipeline.EpisodeSet, split: str,
                 bias_mode: str = "permutation"):
        super().__init__(name="episode_builder")
        self.schema: schema_lib.EpisodeSchema = episodes.schema
        x, y, self.mean, self.std = base_tables(episodes, split)
        self.x_table, self.y_table = x, y
        self.seed, self.bias_mode = episodes.seed, bias_mode
        self.d_in = int(x.shape[-1])

    def __call__(self, records: dict):
        s = self.schema
        fixed = tf.constant(augment.FIXED_TASK_ID, tf.int64)
        task = tf.cast(records[TASK_ID], tf.int64)
        biased = records[BIASED]
        perm_id = tf.where(biased, fixed, task)
        proj_id = tf.where(biased, fixed, task) if self.bias_mode == "task" else task
        x = (tf.cast(tf.gather(self.x_table, records[INDICES]), tf.float32) - self.mean) \
            / self.std                                                        # [B, N, d_in]
        projections = tf.map_fn(
            lambda t: augment.task_projection(self.seed, t, self.d_in, s.input_size), proj_id,
            fn_output_signature=tf.float32)                                   # [B, d_in, N_x]
        permutations = tf.map_fn(
            lambda t: augment.task_permutation(self.seed, t, s.num_classes), perm_id,
            fn_output_signature=tf.int32)                                     # [B, C]
        inputs = tf.einsum("bnd,bdk->bnk", x, projections)
        labels = tf.gather(permutations, tf.gather(self.y_table, records[INDICES]),
                           batch_dims=1)                                      # [B, N]
        return {schema_lib.INPUTS: inputs, schema_lib.LABELS: labels}, labels
