"""Classification: real datasets seen through random projections and label
permutations (the paper's augmentation), and synthetic tables from the prior
(episodes: `data.kinds.classification`), evaluated against k-NN, logistic
regression and SGD baselines (`eval.evaluate`)."""

from __future__ import annotations

from gpicl_tf.eval import evaluate, report as report_lib
from gpicl_tf.tasks.base import Task


class Classification(Task):
    name = "classification"
    exportable = True
    tunable = True
    sequence_baselines = True
    held_out = "unseen tasks"

    def evaluate(self, models, sets, tune_set, eval_config):
        return evaluate.evaluate(models, sets, tune_set, eval_config)

    def write_report(self, report, out_dir):
        return report_lib.write_report(report, out_dir)

    def markdown(self, report):
        return report_lib.markdown_table(report)


TASK = Classification()
