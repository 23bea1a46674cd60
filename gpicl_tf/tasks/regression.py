"""Function regression: random-function tasks (`data.source="functions:FAMILY"`,
`gpicl_tf.data.functions`); episodes store the values themselves, M of the N
points are queries whose value is hidden, the loss is the MSE on queries.

    record:   episode_id int64 [], task_id int64 [], x float [N * d],
              y float [N] (observed), clean float [N] (noise-free), query int64 [N]
    features: inputs float32 [N, d], values float32 [N] (queries zeroed),
              query float32 [N]
    targets:  float32 [N, 2]  (y_j, query_j)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.tasks.base import Task, feature, serialize

INPUTS, VALUES, QUERY, TARGETS = "inputs", "values", "query", "targets"
PREFIX = "functions:"


def function_records(plan, shard: int, first: int, task_ids: np.ndarray, family: str, config,
                     fcfg):
    """Yields the serialized function episodes `first .. first+len(task_ids)-1` of a
    shard: each re-creates its task's function and samples N points."""
    from gpicl_tf.data import functions
    from gpicl_tf.data.episodes import split_salt

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


class Regression(Task):
    name = "regression"
    held_out = "held-out tasks"
    unseen_source = "unseen family"

    def claims(self, source: str) -> bool:
        return source.startswith(PREFIX)

    def label(self, source: str) -> str:
        return source[len(PREFIX):]   # the family

    def settings(self, data_config) -> tuple[str, ...]:
        return ("functions",)

    # ------------------------------------------------------------- schema
    def check_schema(self, schema) -> None:
        if not 1 <= schema.num_queries < schema.episode_length:
            raise InvalidInputError(
                f"num_queries={schema.num_queries} must be in "
                f"[1, episode_length={schema.episode_length})")
        if schema.stored_dim:
            raise InvalidInputError(
                f"stored_dim={schema.stored_dim!r}: function episodes store x itself (set 0)")

    def token_size(self, schema) -> int:
        return schema.input_size + 2     # x, the value, the query flag

    def record_spec(self, schema) -> dict:
        n = schema.episode_length
        return {"episode_id": tf.io.FixedLenFeature([], tf.int64),
                "task_id": tf.io.FixedLenFeature([], tf.int64),
                "x": tf.io.FixedLenFeature([n * schema.input_size], tf.float32),
                "y": tf.io.FixedLenFeature([n], tf.float32),
                "clean": tf.io.FixedLenFeature([n], tf.float32),
                "query": tf.io.FixedLenFeature([n], tf.int64)}

    def feature_specs(self, schema, length):
        return {INPUTS: tf.TensorSpec([None, length, schema.input_size], tf.float32, name=INPUTS),
                VALUES: tf.TensorSpec([None, length], tf.float32, name=VALUES),
                QUERY: tf.TensorSpec([None, length], tf.float32, name=QUERY)}

    def target_spec(self, schema, length):
        return tf.TensorSpec([None, length, 2], tf.float32, name=TARGETS)

    # ------------------------------------------------------------- episodes
    def writer(self, config, plans, functions_config, prior_config):
        """Checks the family's settings; returns the schema and a preparer (no base data)."""
        from gpicl_tf.config import FunctionConfig
        from gpicl_tf.data import functions, schema as schema_lib

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
        spec = self.record_spec(schema)
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

    # ------------------------------------------------------------- model and training
    def check_model(self, model_config) -> None:
        if model_config.arch != "transformer":
            raise InvalidInputError(
                f"arch={model_config.arch!r}: function regression episodes are learned by "
                "the transformer only")
        if model_config.layout != "pfn":
            raise InvalidInputError(
                f"layout={model_config.layout!r}: function regression uses the PFN-style "
                "layout (context tokens carry their values, queries attend to the "
                "context); set model.layout=pfn")

    def build_model(self, model_config, schema):
        from gpicl_tf.models import sequence_models

        return sequence_models.build_function_transformer(model_config, schema)

    def loss(self):
        from gpicl_tf.training.metrics import query_mse

        return query_mse

    def metrics(self, schema):
        from gpicl_tf.training.metrics import QueryMSE

        return [QueryMSE()]

    def example_losses(self, y_true, y_pred):
        from gpicl_tf.training.metrics import query_mse

        return query_mse(y_true, y_pred)

    def batch_sums(self, y_true, y_pred, window):
        y, query = y_true[..., 0], y_true[..., 1]
        sq = tf.square(tf.cast(y_pred, tf.float32) - y) * query
        return tf.stack([tf.reduce_sum(sq), tf.reduce_sum(query)])

    def metric_logs(self, sums, window):
        return {"mse": float(sums[0] / sums[1]) if sums[1] else 0.0}

    # ------------------------------------------------------------- evaluation
    def evaluate(self, models, sets, tune_set, eval_config):
        from gpicl_tf.eval import regression

        if len(models) != 1:
            raise InvalidInputError(
                f"function regression evaluates one learner against its own baselines "
                f"(k-NN, least squares, ridge, polynomial, GP); got {sorted(models)}")
        (path,) = models.values()
        return regression.evaluate_functions(path, sets, tune_set, eval_config)

    def write_report(self, report, out_dir):
        from gpicl_tf.eval import regression_report

        return regression_report.write_report(report, out_dir)

    def markdown(self, report):
        from gpicl_tf.eval import regression_report

        return regression_report.markdown(report)


TASK = Regression()
