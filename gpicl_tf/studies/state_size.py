"""The `state_size` study: accuracy on unseen tasks against the learner's
accessible state and against its parameter count (Kirsch et al. 2022, arXiv:2212.04458:
the state size, not the parameter count, decides what a meta-learner can learn
in context; measured here: docs/results/state_size.md).

Transformers of several widths, LSTMs of several hidden sizes and VSML layers
of several sub-LSTM sizes (few parameters, a large state), chosen so that the
orders cross: the largest LSTM has more parameters than every
Transformer but a smaller state (2 x units floats against the Transformer's
keys and values over the context: 2 x layers x heads x key size x N), and VSML
has the fewest parameters and a state of 2 x inputs x classes x sub-LSTM units.
Every cell trains the same steps on the same episodes with the preset's
curriculum; the LSTM and VSML read the paper's token layout (they have no other).
"""

from __future__ import annotations

import os

from gpicl_tf.data import pipeline
from gpicl_tf.models import state_size
from gpicl_tf.models.sequence_models import XLA_SLOWER
from gpicl_tf.studies import measure
from gpicl_tf.studies.runner import Cell, Study
from gpicl_tf.studies.transition import size_sets


def grid(transformer_sizes, lstm_units, steps: int, vsml_states=()):
    def cells() -> list[Cell]:
        out = [Cell(f"transformer {s}", {"arch": "transformer", "width": s},
                    ("model.arch=transformer", *size_sets(s), f"train.steps={steps}"))
               for s in transformer_sizes]
        out += [Cell(f"lstm {u}", {"arch": "lstm", "width": u},
                     ("model.arch=lstm", "model.layout=paper", f"model.lstm_units={u}",
                      f"train.steps={steps}"))
                for u in lstm_units]
        out += [Cell(f"vsml {s}", {"arch": "vsml", "width": s},
                     ("model.arch=vsml", "model.layout=paper", f"model.vsml_state={s}",
                      f"train.steps={steps}",
                      f"train.jit_compile={str('vsml' not in XLA_SLOWER).lower()}"))
                for s in vsml_states]
        return out
    return cells


def prepare(base, episode_root: str) -> dict:
    return {"dataset": measure.unseen_dataset(base, episode_root)}


def measure_cell(context: dict, cfg, run_dir: str, episodes_dir: str) -> dict:
    eps = pipeline.open_episodes(episodes_dir)
    sets = {"unseen": (eps, "test")}
    if context["dataset"] is not None:
        sets["dataset"] = (pipeline.open_episodes(context["dataset"][1]), "test")
    return {"state_size": state_size(cfg.model, cfg.data.episode_length, cfg.data.input_size,
                                     cfg.data.num_classes),
            **measure.accuracy_figures(measure.load_model(run_dir), sets, cfg.eval.episodes)}


def figures(rows: list[dict], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpicl_tf.eval.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, label in zip(axes, ("state_size", "parameters"),
                              ("accessible state (floats)", "parameters")):
        for i, arch in enumerate(sorted({r["arch"] for r in rows})):
            mine = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r[key])
            ax.errorbar([r[key] for r in mine], [r["unseen_acc"] for r in mine],
                        yerr=[r["unseen_ci95"] for r in mine], fmt="o-", color=f"C{i}",
                        capsize=3, label=arch)
            for r in mine:
                ax.annotate(str(r["width"]), (r[key], r["unseen_acc"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
        ax.axhline(0.1, color="gray", ls=":", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on unseen tasks, last 10 positions")
    axes[0].legend(fontsize=8)
    path = os.path.join(out_dir, "state_size.png")
    save_figure(fig, path)
    return [path]


def notes(rows: list[dict]) -> list[str]:
    lstm = [r for r in rows if r["arch"] == "lstm"]
    tf = [r for r in rows if r["arch"] == "transformer"]
    if not lstm or not tf:
        return []
    big_lstm = max(lstm, key=lambda r: r["parameters"])
    beaten = [r for r in tf if r["parameters"] < big_lstm["parameters"]
              and r["state_size"] > big_lstm["state_size"]
              and r["unseen_acc"] - r["unseen_ci95"] > big_lstm["unseen_acc"] +
              big_lstm["unseen_ci95"]]
    return [f"- The largest LSTM ({big_lstm['parameters']:,} parameters, state "
            f"{big_lstm['state_size']:,}) reaches {big_lstm['unseen_acc']:.3f} on unseen tasks; "
            f"Transformers with fewer parameters but a larger state that beat it (intervals "
            f"apart): {', '.join(str(r['width']) for r in beaten) or 'none'}."]


STUDY = Study(
    name="state_size",
    description=("Accuracy over the last 10 positions on unseen tasks against the accessible "
                 "state and the parameter count, Transformers (PFN layout), LSTMs and VSML, the same "
                 "steps and episodes in every cell."),
    grids={
        "smoke": grid((8,), (8,), steps=20, vsml_states=(2,)),
        "cpu": grid((8, 16, 32, 64), (16, 64, 256, 512), steps=1500, vsml_states=(2, 8)),
        "paper": grid((64, 128, 256, 512), (256, 1024, 2048, 4096), steps=500_000,
                      vsml_states=(8, 16)),
    },
    prepare=prepare,
    measure=measure_cell,
    figures=figures,
    columns=("parameters", "state_size", "plateau_exit_step", "unseen_acc", "unseen_ci95",
             "dataset_acc", "unseen_improvement"),
    notes=notes,
)
