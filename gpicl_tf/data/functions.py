"""Function-regression task families: task id -> a function f: R^d -> R.

A task is derived from (seed, family, task id) alone, with numpy's generator
seeded by that triple, so the same id gives the same function in every process
(the evaluation re-creates a task's function to plot its curve). Episodes draw
x ~ U(-1, 1)^d, observe y = f(x) + N(0, noise_std^2), and hide M of the N values
as queries (value zeroed, query flag set), as in the paper (Kirsch et al. 2022, arXiv:2212.04458).

Families (`data.source = "functions:FAMILY"`):
    mlp     random MLPs (depth, width, tanh/swish/relu, fan-in-scaled weights),
            standardised per task and scaled by a log-uniform factor.
    sine    A sin(2 pi f u.x + phase).
    linear  a.x + b.
    poly    sum_k c_k (u.x)^k, degree `poly_degree`.
    gp      Gaussian-process samples, RBF kernel (random Fourier features).

Example:
    >>> f = sample_function("sine", task_rng(0, "sine", 7), 1, FunctionConfig())
    >>> f(np.zeros((3, 1))).shape
    (3,)
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from gpicl_tf.config import FunctionConfig
from gpicl_tf.errors import InvalidInputError

PREFIX = "functions:"
FAMILIES = ("mlp", "sine", "linear", "poly", "gp")
ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "swish": lambda z: z / (1.0 + np.exp(-z)),
}
_REFERENCE_POINTS = 256
_FOURIER_FEATURES = 256

Function = Callable[[np.ndarray], np.ndarray]


def family_of(source: str) -> str | None:
    """The family of a "functions:FAMILY" source; None for a dataset source.

    Raises:
        ValueError: a "functions:" source whose family is unknown.
    """
    if not source.startswith(PREFIX):
        return None
    family = source[len(PREFIX):]
    if family not in FAMILIES:
        raise InvalidInputError(
            f"function family {family!r} (source {source!r}) is not one of "
            f"{FAMILIES}")
    return family


def task_rng(seed: int, family: str, task_id: int) -> np.random.Generator:
    """The generator of one task's parameters; keyed by the family's name (its
    CRC-32), so adding or reordering families changes no task."""
    return np.random.default_rng([int(seed), zlib.crc32(family.encode("utf-8")), int(task_id)])


def _direction(rng: np.random.Generator, d: int) -> np.ndarray:
    u = rng.standard_normal(d)
    return u / max(np.linalg.norm(u), 1e-12)


def _uniform(rng, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if high > low else float(low)


def _log_uniform(rng, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else float(low)


def mlp_function(rng: np.random.Generator, d: int, cfg: FunctionConfig) -> Function:
    act = ACTIVATIONS[cfg.mlp_activations[int(rng.integers(len(cfg.mlp_activations)))]]
    layers, fan_in = [], d
    for _ in range(cfg.mlp_depth):
        w = rng.standard_normal((fan_in, cfg.mlp_width)) * cfg.mlp_weight_scale / np.sqrt(fan_in)
        b = rng.standard_normal(cfg.mlp_width) * cfg.mlp_bias_scale
        layers.append((w, b))
        fan_in = cfg.mlp_width
    w_out = rng.standard_normal(fan_in) / np.sqrt(fan_in)

    def raw(x):
        h = x
        for w, b in layers:
            h = act(h @ w + b)
        return h @ w_out

    ref = raw(rng.uniform(-1.0, 1.0, (_REFERENCE_POINTS, d)))
    mean, std = float(ref.mean()), float(max(ref.std(), 1e-6))
    scale = _log_uniform(rng, cfg.mlp_output_min, cfg.mlp_output_max)
    return lambda x: (raw(x) - mean) / std * scale


def sine_function(rng: np.random.Generator, d: int, cfg: FunctionConfig) -> Function:
    amplitude = _uniform(rng, cfg.sine_amplitude_min, cfg.sine_amplitude_max)
    frequency = _uniform(rng, cfg.sine_frequency_min, cfg.sine_frequency_max)
    phase = float(rng.uniform(0.0, 2 * np.pi))
    u = _direction(rng, d)
    return lambda x: amplitude * np.sin(2 * np.pi * frequency * (x @ u) + phase)


def linear_function(rng: np.random.Generator, d: int, cfg: FunctionConfig) -> Function:
    a = rng.standard_normal(d) * cfg.linear_slope_scale / np.sqrt(d)
    b = float(rng.standard_normal() * cfg.linear_bias_scale)
    return lambda x: x @ a + b


def poly_function(rng: np.random.Generator, d: int, cfg: FunctionConfig) -> Function:
    coefs = rng.standard_normal(cfg.poly_degree + 1) * cfg.poly_coef_scale
    u = _direction(rng, d)
    return lambda x: np.polynomial.polynomial.polyval(x @ u, coefs)


def gp_function(rng: np.random.Generator, d: int, cfg: FunctionConfig) -> Function:
    """A sample of a zero-mean, unit-variance GP with an RBF kernel of length
    scale l: sqrt(2/D) sum_i w_i cos(omega_i.x + b_i), omega ~ N(0, I/l^2)."""
    length = _log_uniform(rng, cfg.gp_length_min, cfg.gp_length_max)
    omega = rng.standard_normal((d, _FOURIER_FEATURES)) / length
    offset = rng.uniform(0.0, 2 * np.pi, _FOURIER_FEATURES)
    weights = rng.standard_normal(_FOURIER_FEATURES)
    return lambda x: np.sqrt(2.0 / _FOURIER_FEATURES) * np.cos(x @ omega + offset) @ weights


GENERATORS = {"mlp": mlp_function, "sine": sine_function, "linear": linear_function,
              "poly": poly_function, "gp": gp_function}


def check_config(cfg: FunctionConfig, d: int, episode_length: int) -> None:
    """Raises ValueError naming the first bad setting."""
    if d < 1:
        raise InvalidInputError(f"input_size={d} must be a positive dimension of x")
    if not 1 <= cfg.num_queries < episode_length:
        raise InvalidInputError(
            f"functions.num_queries={cfg.num_queries} must be in "
            f"[1, episode_length={episode_length})")
    if cfg.noise_std < 0:
        raise InvalidInputError(f"functions.noise_std={cfg.noise_std} must be >= 0")
    unknown = [a for a in cfg.mlp_activations if a not in ACTIVATIONS]
    if unknown or not cfg.mlp_activations:
        raise InvalidInputError(
            f"functions.mlp_activations={cfg.mlp_activations!r}: each must be one "
            f"of {sorted(ACTIVATIONS)}")
    for name in ("mlp_depth", "mlp_width"):
        if getattr(cfg, name) < 1:
            raise InvalidInputError(f"functions.{name}={getattr(cfg, name)} must be positive")
    for low, high in (("mlp_output_min", "mlp_output_max"), ("gp_length_min", "gp_length_max"),
                      ("sine_amplitude_min", "sine_amplitude_max"),
                      ("sine_frequency_min", "sine_frequency_max")):
        lo, hi = getattr(cfg, low), getattr(cfg, high)
        if not 0 < lo <= hi:
            raise InvalidInputError(
                f"functions.{low}={lo} and functions.{high}={hi} must satisfy "
                f"0 < {low} <= {high}")
    if cfg.poly_degree < 0:
        raise InvalidInputError(f"functions.poly_degree={cfg.poly_degree} must be >= 0")


def sample_function(family: str, rng: np.random.Generator, d: int,
                    cfg: FunctionConfig) -> Function:
    """One task of `family`: a function x [n, d] -> y [n]."""
    if family not in GENERATORS:
        raise InvalidInputError(f"function family {family!r} is not one of {FAMILIES}")
    return GENERATORS[family](rng, d, cfg)


def task_function(family: str, seed: int, task_id: int, d: int, cfg: FunctionConfig) -> Function:
    """The function of task `task_id` (the same in every process)."""
    return sample_function(family, task_rng(seed, family, task_id), d, cfg)


def sample_episode(rng: np.random.Generator, f: Function, n: int, d: int,
                   cfg: FunctionConfig) -> dict[str, np.ndarray]:
    """One episode of a task: x float32 [n, d] ~ U(-1, 1), clean = f(x),
    y = clean + noise (float32 [n]), query int64 [n] with `num_queries` ones."""
    x = rng.uniform(-1.0, 1.0, (n, d))
    clean = f(x)
    y = clean + cfg.noise_std * rng.standard_normal(n)
    query = np.zeros(n, np.int64)
    query[rng.choice(n, cfg.num_queries, replace=False)] = 1
    return {"x": x.astype(np.float32), "y": y.astype(np.float32),
            "clean": clean.astype(np.float32), "query": query}
