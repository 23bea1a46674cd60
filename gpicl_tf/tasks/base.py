"""The interface every task implements (`gpicl_tf.tasks`)."""

from __future__ import annotations

import abc

from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.data import kinds
from gpicl_tf.training import objectives, train


class Task(abc.ABC):
    """One kind of episode, as the applications see it: a bundle naming its parts
    in the layers below (how its episodes are written and read, `kind`: a
    `data.kinds` module; its learners, `config.kinds.learners`; the
    loss and metrics, `objective`: `training.objectives`) and what only the
    applications ask: its evaluation against baselines and its report.

    Capabilities (class attributes) say which shared machinery applies:
    `exportable` (the classification serving signature), `tunable` (the Keras
    Tuner search scores accuracy), `sequence_baselines` (LSTM and MLP trained
    beside the Transformer in the main job); `curriculum` and `device_episodes`
    are its episodes' (`kind`).
    """

    name: str = ""
    exportable: bool = False
    tunable: bool = False
    sequence_baselines: bool = False
    held_out: str = "unseen tasks"        # how reports name the meta-test set
    unseen_source: str = "unseen dataset"  # and a set from another source

    @property
    def kind(self) -> kinds.EpisodeKind:
        """How this task's episodes are written and read."""
        return kinds.get(self.name)

    @property
    def objective(self) -> objectives.Objective:
        """The loss and metrics this task's learners train with."""
        return kind_registry.part(self.name, "objective")

    @property
    def curriculum(self) -> bool:
        return self.kind.curriculum

    @property
    def device_episodes(self) -> bool:
        return self.kind.device_episodes

    def claims(self, source: str) -> bool:
        """Whether `source` (data.source) writes this task's episodes."""
        return self.kind.claims(source)

    def settings(self, data_config) -> tuple[str, ...]:
        """The config sections besides `data` that this source's episodes are
        written with (what an episode cache must key on)."""
        return self.kind.settings(data_config)

    def label(self, source: str) -> str:
        """How reports name a source of this task."""
        return self.kind.label(source)

    def check_training(self, train_config) -> None:
        """Raises naming the setting when training cannot apply it to this task."""
        train.check_training(train_config, self.kind)

    @abc.abstractmethod
    def evaluate(self, models: dict[str, str], sets: dict, tune_set: tuple, eval_config) -> dict:
        """The report of `models` (name -> model file) on `sets` against the task's
        baselines, tuned on `tune_set` (episode dir, split)."""

    @abc.abstractmethod
    def write_report(self, report: dict, out_dir: str) -> dict:
        """Writes report.json, report.md and the plots to `out_dir`; returns their paths."""

    @abc.abstractmethod
    def markdown(self, report: dict) -> str:
        """The report's tables as Markdown."""
