"""The function-regression report: MSE tables against the baselines, targets,
per-set MSE curves and per-task curves (report.json, report.md, PNGs)."""

from __future__ import annotations

import math
import os

from gpicl_tf.eval.report import save_figure, slug, write_files


TARGET_COUNT = 20


def _at(entry: dict, method: str, count: int) -> tuple[float, float]:
    v = entry["methods"][method]
    k = v["counts"].index(count)
    return v["mse"][k], v["ci95"][k]


def _mse_cell(v: dict, k: int) -> str:
    """MSE with its 95% interval: the bootstrap one where the report has it."""
    if "ci_low" in v:
        return f"{v['mse'][k]:.4f} [{v['ci_low'][k]:.4f}, {v['ci_high'][k]:.4f}]"
    return f"{v['mse'][k]:.4f} ± {v['ci95'][k]:.4f}"


def paired_table(report: dict, count: int) -> list[str]:
    """Lines of a table: the learner's MSE minus each baseline's at `count` context
    points, with the 95% bootstrap interval of the difference paired over episodes
    (negative: the learner is better)."""
    datasets = [d for d in report["datasets"] if report["datasets"][d].get("paired")]
    if not datasets:
        return []
    learner = next(iter(report["datasets"][datasets[0]]["paired"]))
    baselines = list(report["datasets"][datasets[0]]["paired"][learner])
    lines = ["", f"{learner} MSE minus each baseline's at {count} context points (95% bootstrap "
             "interval of the difference, paired over the same episodes; negative = learner "
             "better):", "",
             "| Baseline | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for b in baselines:
        cells = []
        for d in datasets:
            v = report["datasets"][d]["paired"][learner][b]
            k = v["counts"].index(count)
            cells.append(f"{v['diff'][k]:+.4f} [{v['ci_low'][k]:+.4f}, {v['ci_high'][k]:+.4f}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def targets(report: dict, count: int = TARGET_COUNT) -> list[str]:
    """Issue 7's targets, checked on the report: linear within 1.5x of least
    squares, sine below k-NN, held-out MLP functions below every baseline."""
    from gpicl_tf.eval.regression import LEARNER

    if count not in report["counts"]:
        return []
    lines = []
    for name, entry in report["datasets"].items():
        family = entry["family"]
        mine, _ = _at(entry, LEARNER, count)
        if family == "linear":
            ls, _ = _at(entry, "least squares", count)
            ratio = mine / ls
            lines.append(f"- {name}: learner / least squares = {mine:.4f} / {ls:.4f} = "
                         f"{ratio:.2f}x (target <= 1.5x): {'met' if ratio <= 1.5 else 'NOT met'}")
        elif family == "sine":
            knn, _ = _at(entry, "k-NN (tuned k)", count)
            lines.append(f"- {name}: learner {mine:.4f} vs k-NN {knn:.4f} (target: below): "
                         f"{'met' if mine < knn else 'NOT met'}")
        elif family == "mlp" and "held-out" in name:
            others = {m: _at(entry, m, count)[0] for m in entry["methods"] if m != LEARNER}
            best = min(others, key=others.get)
            met = mine < others[best]
            lines.append(f"- {name}: learner {mine:.4f} vs best baseline {best} "
                         f"{others[best]:.4f} (target: below every baseline): "
                         f"{'met' if met else 'NOT met'}")
    if lines:
        lines = [f"Targets at {count} context points:", ""] + lines
    return lines


def markdown(report: dict) -> str:
    """MSE at 20 context points (methods x sets), then MSE against the number of
    context points for each set, then the targets."""
    datasets = list(report["datasets"])
    counts = report["counts"]
    headline = TARGET_COUNT if TARGET_COUNT in counts else counts[-1]
    methods = list(report["datasets"][datasets[0]]["methods"])
    episodes = sorted({report["datasets"][d]["episodes"] for d in datasets})
    noise = report.get("noise_std", 0.0)
    lines = [f"MSE at {headline} context points (mean [95% bootstrap interval] over "
             f"{'/'.join(map(str, episodes))} episodes; against observed y, whose noise "
             f"variance is {noise ** 2:.4g}); each column is one set of meta-test episodes.", "",
             "| Method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for m in methods:
        cells = []
        for d in datasets:
            v = report["datasets"][d]["methods"][m]
            cells.append(_mse_cell(v, v["counts"].index(headline)))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += paired_table(report, headline)
    for d in datasets:
        lines += ["", f"{d}: MSE by number of context points [95% bootstrap interval]", "",
                  "| Method | " + " | ".join(map(str, counts)) + " |",
                  "|---|" + "---|" * len(counts)]
        for m in methods:
            v = report["datasets"][d]["methods"][m]
            lines.append(f"| {m} | " + " | ".join(_mse_cell(v, k) for k in range(len(counts)))
                         + " |")
    met = targets(report)
    if met:
        lines += [""] + met
    lines += ["", f"Baseline settings chosen per context count on {report['tuned_on']}."]
    tasks = report.get("meta_training_tasks")
    if tasks:
        lines += ["", f"Meta-training used {tasks:,} distinct tasks (log2 {math.log2(tasks):.2f})."]
    return "\n".join(lines) + "\n"



def plot_mse_curve(name: str, entry: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, v in entry["methods"].items():
        style = "-o" if method.startswith("GPICL") else "--o"
        lo = [max(a - b, 1e-6) for a, b in zip(v["mse"], v["ci95"])]
        hi = [a + b for a, b in zip(v["mse"], v["ci95"])]
        line, = ax.plot(v["counts"], v["mse"], style, label=method, markersize=3)
        ax.fill_between(v["counts"], lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context points")
    ax.set_ylabel("MSE on the queries")
    ax.set_title(f"{name}: {entry['episodes']} meta-test episodes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)



def plot_curves(name: str, curves: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, c in zip(axes[0], curves):
        ax.plot(c["grid"], c["truth"], "k-", lw=2, label="truth")
        for method, pred in c["predictions"].items():
            ax.plot(c["grid"], pred, "-" if method.startswith("GPICL") else "--",
                    lw=2 if method.startswith("GPICL") else 1, label=method)
        ax.plot(c["context_x"], c["context_y"], "ko", markersize=4, label="context")
        ax.set_title(f"task {c['task_id']}, {c['count']} context points", fontsize=9)
        ax.set_xlabel("x")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(name)
    fig.tight_layout()
    save_figure(fig, path)



def _plot_entry(name: str, entry: dict, out_dir: str) -> str:
    path = os.path.join(out_dir, f"mse_{slug(name)}.png")
    plot_mse_curve(name, entry, path)
    entry["plot"] = os.path.basename(path)
    if entry.get("curves"):
        tasks = os.path.join(out_dir, f"tasks_{slug(name)}.png")
        plot_curves(name, entry["curves"], tasks)
        entry["task_plot"] = os.path.basename(tasks)
    return path



def write_report(report: dict, out_dir: str) -> dict:
    """report.json, report.md and, per set, mse_<set>.png and tasks_<set>.png."""
    return write_files(report, out_dir, _plot_entry, markdown)


