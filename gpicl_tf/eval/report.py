"""Writes an evaluation report: report.json, report.md (Table-1 shape), PNG plots."""

from __future__ import annotations

import os
import re

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
                cells.append(f"{v['first10']:.3f} -> {v['last10']:.3f} ({v['improvement']:+.3f})"
                             if v else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    sgd = report.get("sgd", {}).get("chosen")
    if sgd:
        lines += ["", f"SGD (tuned): Adam lr {sgd['learning_rate']}, {sgd['steps']} full-batch "
                  f"steps, chosen on {report['sgd']['tuned_on']}."]
    return "\n".join(lines) + "\n"


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
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_report(report: dict, out_dir: str) -> dict:
    """Writes the files; returns {kind: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "report.json"),
             "md": os.path.join(out_dir, "report.md")}
    for name, entry in report["datasets"].items():
        path = os.path.join(out_dir, f"accuracy_{slug(name)}.png")
        plot_dataset(name, entry, path)
        entry["plot"] = os.path.basename(path)
        paths[name] = path
    storage.write_json(paths["json"], report)
    with storage.atomic_path(paths["md"]) as tmp:
        with open(tmp, "w") as f:
            f.write(markdown_table(report))
    return paths
