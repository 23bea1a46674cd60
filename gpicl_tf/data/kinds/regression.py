"""Function-regression episodes: random-function tasks (`data.source="functions:FAMILY"`,
`gpicl_tf.data.functions`); episodes store the values themselves, M of the N
points are queries whose value is hidden (layout: `schema.RegressionLayout`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from gpicl_tf.config import FunctionConfig
from gpicl_tf.data import functions, schema as schema_lib
from gpicl_tf.data.kinds.base import EpisodeKind, feature, serialize, split_salt
from gpicl_tf.data.schema import INPUTS, QUERY, VALUES
from gpicl_tf.errors import InvalidInputError

PREFIX = "functions:"


def function_records(plan, shard: int, first: int, task_ids: np.ndarray, family: str, config,
                     fcfg):
    """Yields the serialized function episodes `first .. first+len(task_ids)-1` of a
    shard: each re-creates its task's function and samples N points."""
    rng = np.random.default_rng([config.seed, split_salt(plan.name), shard, 1])
    d, n = config.input_size, config.episode_length
    for offset, task_id in enumerate(task_ids):
        task_id = int(task_id)
        f = functions.task_function(family, config.seed, task_id, d, fcfg)
        ep = functions.sample_episode(rng, f, n, d, fcfg)
        yield serialize({"episode_id": feature("int", [first + offset]),
                         "task_id": feature("int", [task_id]),
                         "x": feature("float", ep["x"].ravel()), "y": feature("float", ep["y"]),
                         "clean": feature("float", ep["clean"]),
                         "query": feature("int", ep["query"])})


class Regression(EpisodeKind):
    name = "regression"

    def claims(self, source: str) -> bool:
        return source.startswith(PREFIX)

    def label(self, source: str) -> str:
        return source[len(PREFIX):]   # the family

    def settings(self, data_config) -> tuple[str, ...]:
        return ("functions",)

    def writer(self, config, plans, functions_config, prior_config):
        """Checks the family's settings; returns the schema and a preparer (no base data)."""
        fcfg = functions_config or FunctionConfig()
        family = functions.family_of(config.source)
        if config.num_classes != 0:
            raise InvalidInputError(
                f"num_classes={config.num_classes}: function regression "
                f"(source {config.source!r}) has no classes; set data.num_classes=0")
        functions.check_config(fcfg, config.input_size, config.episode_length)
        schema = schema_lib.EpisodeSchema(config.episode_length, config.input_size, 0,
                                          task=self.name, num_queries=fcfg.num_queries)

        def prepare(out_dir: str):
            extra = {"source": {"name": config.source, "family": family, "num_classes": 0,
                                "dim": config.input_size},
                     "functions": dataclasses.asdict(fcfg), "base": {}}

            def make_records(plan, shard, first, task_ids):
                return function_records(plan, shard, first, task_ids, family, config, fcfg)
            return extra, make_records

        return schema, prepare

    def feature_builder(self, episodes, split, batch_size, bias, bias_mode):
        """Features (inputs, values with queries zeroed, query flags) and targets
        (y, query) [N, 2]; the curriculum does not apply."""
        schema = episodes.schema
        spec = schema.record_spec()
        n, d = schema.episode_length, schema.input_size

        def build(position, raw):
            del position
            rec = tf.io.parse_single_example(raw, spec)
            query = tf.cast(rec["query"], tf.float32)
            features = {INPUTS: tf.reshape(rec["x"], [n, d]), VALUES: rec["y"] * (1.0 - query),
                        QUERY: query}
            return features, tf.stack([rec["y"], query], axis=-1)

        return build

    def served_stage(self, episodes, split):
        build = self.feature_builder(episodes, split, 1, None, "permutation")
        return lambda raw: build(0, raw)

    def trainer_stage(self, schema, seed, batch_size, bias):
        return lambda position, episode: episode

    def record_check(self, schema, manifest, split_info):
        num_queries = schema.num_queries

        def check(rec: dict) -> str | None:
            queries = int(rec["query"].numpy().sum())
            if queries != num_queries:
                return f"{queries} query flags, the schema has num_queries={num_queries}"
            if not all(np.all(np.isfinite(rec[k].numpy())) for k in ("x", "y", "clean")):
                return "non-finite x or y values"
            return None
        return check


KIND = Regression()
