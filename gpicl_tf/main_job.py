"""The main job: episodes -> meta-training -> baselines -> evaluation -> export -> report.

    run_all(get_preset("cpu"), "runs/cpu")

Layout of the workdir: episodes/<source>/ (training and meta-test episodes),
episodes/eval-<source>/ (unseen datasets), transformer/, lstm/, mlp/ (training
runs), report/ (report.json, report.md, PNG plots). Every stage reads the
previous stage's files; a finished stage is not run again.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import logging

from gpicl_tf import tasks
from gpicl_tf.config import Config
from gpicl_tf.config import override
from gpicl_tf.data import episodes as episodes_lib, sources
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.eval import evaluate as evaluate_lib
from gpicl_tf.export import saved_model
from gpicl_tf.models.sequence_models import TRAIN_SETTINGS, XLA_SLOWER
from gpicl_tf.training import train

NAMES = {"transformer": "GPICL Transformer", "lstm": "LSTM", "mlp": "MLP (no context)",
         "maml": "MAML", "vsml": "VSML"}


def _dirname(source: str) -> str:
    """A directory name for a source: "tfds:NAME" and "functions:F" lose the colon."""
    return source.replace(":", "-")


def write_eval_episodes(config: Config, workdir: str) -> tuple[dict, list]:
    """Meta-test episodes of unseen datasets, projected to the model's input size."""
    sets, skipped = {}, []
    for name in config.eval.datasets:
        if name == config.data.source:
            continue
        data = dataclasses.replace(config.data, source=name, mixture=(), train_episodes=0,
                                   test_episodes=config.eval.episodes)
        try:
            out = episodes_lib.ensure_episodes(
                data, os.path.join(workdir, "episodes", f"eval-{_dirname(name)}"),
                config.functions, config.prior)
        except sources.SourceUnavailableError as e:
            logging.warning("unseen dataset %s skipped: %s", name, e)
            skipped.append({"dataset": name, "reason": str(e)})
            continue
        task = tasks.for_source(name)
        sets[f"{task.label(name)} ({task.unseen_source})"] = (out, "test")
    return sets, skipped


def training_runs(config: Config) -> dict[tuple[str, str], Config]:
    """{(display name, run directory): config} of every model the main job trains.

    The Transformer once per seed (`eval.seeds`: train.seed, train.seed + 1, ...),
    then each sequence baseline with the Transformer's budget (`eval.baseline_steps`
    steps, 0 = the Transformer's), its training settings with `eval.baseline_train`
    applied (after the learner's own, `TRAIN_SETTINGS`), and the same curriculum, in the
    paper layout
    (without XLA for the learners it slows down: `XLA_SLOWER`).
    """
    seeds = config.eval.seeds
    runs = {}
    for i in range(seeds):
        seed = config.train.seed + i
        name = NAMES["transformer"] if seeds == 1 else f"{NAMES['transformer']} (seed {seed})"
        runs[(name, "transformer" if i == 0 else f"transformer-seed{seed}")] = \
            dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    steps = config.eval.baseline_steps or config.train.steps
    baselines = config.eval.sequence_baselines
    for arch in baselines if tasks.for_source(config.data.source).sequence_baselines else ():
        base = override(config, [f"train.{item}" for item in (*TRAIN_SETTINGS.get(arch, ()),
                                                              *config.eval.baseline_train)])
        runs[(NAMES.get(arch, arch), arch)] = dataclasses.replace(
            base, model=dataclasses.replace(config.model, arch=arch, layout="paper",
                                                   positions="none"),
            train=dataclasses.replace(base.train, steps=steps,
                                      steps_per_epoch=min(config.train.steps_per_epoch, steps),
                                      jit_compile=base.train.jit_compile
                                      and arch not in XLA_SLOWER))
    return runs


def _training_info(cfg: Config, summary: dict) -> dict:
    """What a report says of how a model was meta-trained."""
    final = summary.get("final", {}).get("bias_fraction")
    return {"steps": int(summary["steps"]), "parameters": int(summary["parameters"]),
            "bias_fraction": cfg.train.bias_fraction, "bias_schedule": cfg.train.bias_schedule,
            "bias_final": "no curriculum" if final is None else
            ("bias off" if final == 0 else f"bias still {final:g}"),
            "seed": cfg.train.seed}


def run_all(config: Config, workdir: str, *, export_dir: str | None = None,
            export_name: str = "gpicl", verbose="auto") -> dict:
    """Runs every stage; returns the report (also in workdir/report/).

    The source's task decides what is trained beside the Transformer, how the
    sets are evaluated and reported, and whether the learner can be exported.
    With `export_dir`, the Transformer is exported (if the task's learners can
    be served) as the next version of EXPORT_DIR/EXPORT_NAME for TF Serving.
    """
    task = tasks.for_source(config.data.source)
    if config.eval.seeds > 1 and not task.sequence_baselines:
        raise InvalidInputError(
            f"eval.seeds={config.eval.seeds}: {task.name} runs evaluate one Transformer "
            "against the task's own baselines; set eval.seeds=1")
    t0 = time.perf_counter()
    times = {}
    # ------------------------------------------------------------------ episodes
    train_eps = episodes_lib.ensure_episodes(
        config.data, os.path.join(workdir, "episodes", _dirname(config.data.source)),
        config.functions, config.prior)
    eval_sets, skipped = write_eval_episodes(config, workdir)
    times["episodes"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ meta-training
    runs = training_runs(config)
    models, training = {}, {}
    for (name, run_dir), cfg in runs.items():
        t = time.perf_counter()
        run_dir = os.path.join(workdir, run_dir)
        summary = train.run(cfg, run_dir, train_eps, verbose=verbose)
        models[name] = os.path.join(run_dir, train.MODEL_FILE)
        training[name] = _training_info(cfg, summary)
        times[f"train_{os.path.basename(run_dir)}"] = time.perf_counter() - t

    # ------------------------------------------------------------------ evaluation
    t = time.perf_counter()
    label = task.label(config.data.source)
    sets = {f"{label} ({task.held_out})": (train_eps, "test"),
            f"{label} (seen tasks)": (train_eps, "seen"), **eval_sets}
    report = task.evaluate(models, sets, (train_eps, "train"), config.eval)
    if config.eval.seeds > 1:
        seed_names = [n for n in models if n.startswith(NAMES["transformer"])]
        means = {f"{NAMES['transformer']} (mean of {len(seed_names)} seeds)": seed_names}
        if config.eval.ensemble > 1:
            views = config.eval.ensemble
            means[f"{NAMES['transformer']} (ensemble of {views} views, mean of "
                  f"{len(seed_names)} seeds)"] = [evaluate_lib.ensemble_name(n, views)
                                                  for n in seed_names]
        for entry in report["datasets"].values():
            entry["methods"] = {
                **{row: evaluate_lib.across_seeds([entry["methods"][n] for n in names])
                   for row, names in means.items()},
                **entry["methods"]}
    report["training"] = training
    times["evaluate"] = time.perf_counter() - t

    # ------------------------------------------------------------------ export
    if export_dir and not task.exportable:
        logging.info("%s learners are not exported (the serving signature maps labelled "
                     "context to class probabilities)", task.name)
    elif export_dir:
        t = time.perf_counter()
        report["export"] = saved_model.export_run(os.path.join(workdir, "transformer"),
                                                  export_dir, export_name)
        times["export"] = time.perf_counter() - t
    return _finish(report, config, skipped, times, t0, workdir, task.write_report)


def _finish(report: dict, config: Config, skipped: list, times: dict, t0: float, workdir: str,
            write) -> dict:
    """Adds the skipped sets, the config and the stage times; writes workdir/report/."""
    times["total"] = time.perf_counter() - t0
    report["skipped"] = skipped
    report["config"] = config.to_dict()
    report["seconds"] = {k: round(v, 1) for k, v in times.items()}
    write(report, os.path.join(workdir, "report"))
    return report
