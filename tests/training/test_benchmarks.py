"""The training benchmark runs end to end (smoke preset, a few steps)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_train_step_benchmark_runs():
    done = subprocess.run([sys.executable, "benchmarks/train_step.py", "--presets", "smoke",
                           "--steps", "4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "GFLOP/s" in out and "matmul shape alone" in out
    for line in ("in fit with real episodes", "in fit as train.run drives it",
                 "train.run end to end",
                 "episodes built on the host:", "built in the step from records:",
                 "with device-side construction"):
        assert line in out, line
    # The printed parameter count is the smoke model's, and its rate is the analytic
    # FLOPs per step (checked against the graph below) over the printed step time.
    from gpicl_tf.config import get_preset
    from gpicl_tf.data.schema import EpisodeSchema
    from gpicl_tf.models import build_model

    cfg = get_preset("smoke")
    schema = EpisodeSchema(cfg.data.episode_length, cfg.data.input_size, cfg.data.num_classes)
    params, synthetic, rate = re.search(r"smoke: transformer .*?, ([\d,]+) params: ([\d.]+) "
                                        r"ms/step, ([\d.]+) GFLOP/s", out).groups()
    assert int(params.replace(",", "")) == build_model(cfg.model, schema).count_params()
    synthetic, rate = float(synthetic), float(rate)
    flops = _bench_module("train_step").transformer_flops(
        cfg.model, schema, cfg.train.batch_size, cfg.data.episode_length)
    assert flops / (synthetic + 0.5) / 1e6 - 0.05 <= rate <= \
        flops / max(synthetic - 0.5, 1e-3) / 1e6 + 0.05, (flops, synthetic, rate)
    # Each printed ratio is the quotient of the printed step times (ms are rounded).
    for label in ("in fit with real episodes", "custom loop, episodes built on the host:"):
        ms, ratio = map(float, re.search(re.escape(label) + r" ([\d.]+) ms/step = ([\d.]+)x",
                                         out).groups())
        assert (ms - 0.5) / (synthetic + 0.5) - 0.01 <= ratio <= (ms + 0.5) / (synthetic - 0.5) \
            + 0.01, (label, ms, synthetic, ratio)


def _bench_module(name):
    """benchmarks/NAME.py imported as a module (its sibling imports resolved)."""
    import importlib.util

    sys.path.insert(0, "benchmarks")
    try:
        spec = importlib.util.spec_from_file_location(name, f"benchmarks/{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove("benchmarks")
    return module


def _graph_matmul_flops(model, batch: int, length: int, input_size: int) -> float:
    """FLOPs of every matrix product in the traced forward pass: 2 x the product of the
    sizes of all indices of each MatMul, BatchMatMulV2 and Einsum."""
    import tensorflow as tf

    fn = tf.function(lambda x, y: model({"inputs": x, "labels": y}))
    graph = fn.get_concrete_function(tf.TensorSpec([batch, length, input_size]),
                                     tf.TensorSpec([batch, length], tf.int32)).graph
    total = 0.0
    for op in graph.get_operations():
        a, b = (list(t.shape) for t in op.inputs[:2]) if op.type in (
            "MatMul", "BatchMatMulV2", "Einsum") else (None, None)
        if op.type == "MatMul":
            total += 2 * a[0] * a[1] * b[1]
        elif op.type == "BatchMatMulV2":
            total += 2 * np.prod(a) * b[-1]
        elif op.type == "Einsum":
            left, right = op.get_attr("equation").decode().split("->")[0].split(",")
            sizes = {**dict(zip(left, a)), **dict(zip(right, b))}
            total += 2 * np.prod(list(sizes.values()))
    return float(total)


@pytest.mark.parametrize("layout", ["paper", "pfn"])
def test_the_analytic_flops_are_the_graphs_matmul_flops(layout):
    """benchmarks/train_step.py's FLOPs per step (3 x forward) against the matrix
    products of the model's traced forward pass. The formula counts the head at every
    token; a PFN model reads out only its N queries of 2N tokens (1.8% at this size)."""
    from gpicl_tf.config import get_preset, override
    from gpicl_tf.data.schema import EpisodeSchema
    from gpicl_tf.models import build_model

    cfg = override(get_preset("smoke"), [f"model.layout={layout}"])
    d = cfg.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    model = build_model(cfg.model, schema)
    b = cfg.train.batch_size
    analytic = _bench_module("train_step").transformer_flops(cfg.model, schema, b,
                                                             d.episode_length)
    graph = _graph_matmul_flops(model, b, d.episode_length, d.input_size)
    assert analytic / 3 == pytest.approx(graph, rel=0.02), (analytic / 3, graph)


def test_precision_benchmark_takes_the_median_window():
    windows = _bench_module("precision")._windows
    # 2 untimed warm-up steps, then windows of 2 steps: (11-4)/2, (13-11)/2, (24-13)/2
    times = [0.0, 3.0, 4.0, 10.0, 11.0, 12.0, 13.0, 22.0, 24.0]
    assert windows(times, 2, 2, 3) == 3.5


@pytest.mark.slow
def test_precision_benchmark_runs():
    done = subprocess.run([sys.executable, "benchmarks/precision.py", "--presets", "smoke",
                           "--repeats", "2", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    rates = {(m.group(1), m.group(2)): float(m.group(3)) for m in re.finditer(
        r"matmul 2048\^3 (\w+) +XLA (on |off): +([\d.]+) GFLOP/s", out)}
    assert len(rates) == 4
    printed = float(re.search(r"without XLA, ([\d.]+)x with", out).group(1))
    assert printed == pytest.approx(rates["bfloat16", "on "] / rates["float32", "on "], abs=0.01)
    steps = re.findall(r"smoke: (fit|custom) +(float32|mixed_bfloat16) +XLA (on |off): +(\d+) "
                       r"ms/step", out)
    assert len(steps) == 8 and all(int(ms) >= 0 for *_, ms in steps)
    assert "1.00x float32+XLA fit" in out.splitlines()[[i for i, line in enumerate(
        out.splitlines()) if "smoke: fit    float32        XLA on" in line][0]]


@pytest.mark.slow
def test_ensemble_views_benchmark_runs(trained_run, smoke_episodes):
    done = subprocess.run([sys.executable, "benchmarks/ensemble_views.py", trained_run,
                           smoke_episodes, "--episodes", "8", "--members", "1,3"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r": (one pass|3 views, relabelled only|3 views, relabelled \+ rotated): "
                      r"last ([\d.]+), last 10 ([\d.]+)", done.stdout)
    assert [r[0] for r in rows] == ["one pass", "3 views, relabelled only",
                                    "3 views, relabelled + rotated"]
    assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[1:])


def test_split_pfn_attention_core_equals_the_masked_one():
    """step_parts' candidate: scores against the N context keys plus each query's own
    key give the PFN mask's answer (which hides the queries from everyone but
    themselves), for context and query rows alike."""
    import numpy as np

    from gpicl_tf.models.layers import attention_mask

    parts = _bench_module("step_parts")
    n = 5
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 2 * n, 4)).astype("float32") for _ in range(3))
    masked = np.asarray(parts.core(q, k, v, attention_mask(n, "pfn")[0]))
    np.testing.assert_allclose(np.asarray(parts.pfn_split_core(q, k, v, n)), masked,
                               rtol=1e-5, atol=1e-6)
    # the first query sees only itself: its output is its own value
    np.testing.assert_allclose(masked[:, :, n], v[:, :, n], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_step_parts_benchmark_runs():
    done = subprocess.run([sys.executable, "benchmarks/step_parts.py", "--preset", "smoke",
                           "--repeats", "2", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ms = {m.group(1): (float(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"^(\w+) +(-?[\d.]+) +(-?\d+)%", done.stdout, re.M)}
    assert {"step", "attention", "core", "mlp", "norms", "remainder"} <= set(ms)
    step = ms["step"][0]
    for name, (value, share) in ms.items():   # each share is its ms over the step's
        assert abs(share - 100 * value / step) <= 0.5 + 100 * 0.0005 * (1 + abs(value) / step) \
            / step, (name, value, share)
    assert abs(ms["remainder"][0] - (step - ms["attention"][0] - ms["mlp"][0]
                                     - ms["norms"][0])) <= 0.002


def test_cell_recipe_benchmark_counts_tables_exports_and_resumes(tmp_path):
    """Two smoke variants: each row's steps and prior tables are its run's own (from
    its log), each variant is exported, and a second call trains nothing again."""
    import csv
    import os

    recipe = _bench_module("cell_recipe")
    out = str(tmp_path)
    args = ["--out", out, "--preset", "cell_smoke", "--steps", "6", "--export",
            "--set", "train.log_every=1",
            "--variant", "base=", "--variant", "rms=model.norm=rms"]
    recipe.main(args)
    text = open(os.path.join(out, "recipe.md")).read()
    for name in ("base", "rms"):
        with open(os.path.join(out, name, "log.csv")) as f:
            rows = list(csv.DictReader(f))
        tables = int(rows[-1]["tables"])
        assert int(rows[-1]["step"]) == 6 and tables > 6, rows
        assert f" | 6 | {tables:,} | " in text, (name, text)
        assert os.path.exists(os.path.join(out, "export", name, "1", "saved_model.pb"))
    assert "| rms | model.norm=rms |" in text and "log_every" not in text.split("\n", 1)[1]
    stamp = os.path.getmtime(os.path.join(out, "rms", "summary.json"))
    recipe.main(args)
    assert os.path.getmtime(os.path.join(out, "rms", "summary.json")) == stamp
    # a resumed session's count starts again from zero: the sessions are summed
    assert recipe._tables_per_session([{"tables": "5"}, {"tables": "9"}, {"tables": "4"}]) \
        == [9, 4]


def test_cell_attention_benchmark_compares_equal_outputs():
    done = subprocess.run([sys.executable, "benchmarks/cell_attention.py", "--repeats", "1",
                           "--width", "8", "--heads", "2"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": "."})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| across")]
    assert len(rows) == 2
    for row in rows:
        assert float(row[5]) > 0 and float(row[6]) < 1e-4, row


def test_vsml_learns_curriculum_episodes_hold_only_the_first_classes():
    bench = _bench_module("vsml_learns")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 64)).astype(np.float32), np.arange(50) % 10
    proj = rng.standard_normal((3, 64, 4)).astype(np.float32)
    perm = np.stack([rng.permutation(10) for _ in range(3)])
    inputs, labels = bench.episodes(np.random.default_rng(1), (x, y), proj, perm, 6, 20, 3)
    assert inputs.shape == (6, 20, 4) and labels.shape == (6, 20)
    # each episode's labels are its task's slots of classes 0-2: three of the ten
    assert all(len(set(row)) <= 3 for row in labels.tolist())
    _, every = bench.episodes(np.random.default_rng(1), (x, y), proj, perm, 6, 200)
    assert max(len(set(row)) for row in every.tolist()) == 10
