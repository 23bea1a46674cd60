"""Function regression: random-function tasks (`data.source="functions:FAMILY"`;
episodes: `data.kinds.regression`), the MSE on the queries of each episode,
evaluated against k-NN, least squares, ridge, polynomial and GP baselines
(`eval.regression`)."""

from __future__ import annotations

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.eval import regression, regression_report
from gpicl_tf.tasks.base import Task


class Regression(Task):
    name = "regression"
    held_out = "held-out tasks"
    unseen_source = "unseen family"

    def evaluate(self, models, sets, tune_set, eval_config):
        if len(models) != 1:
            raise InvalidInputError(
                f"function regression evaluates one learner against its own baselines "
                f"(k-NN, least squares, ridge, polynomial, GP); got {sorted(models)}")
        (path,) = models.values()
        return regression.evaluate_functions(path, sets, tune_set, eval_config)

    def write_report(self, report, out_dir):
        return regression_report.write_report(report, out_dir)

    def markdown(self, report):
        return regression_report.markdown(report)


TASK = Regression()
