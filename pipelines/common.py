"""Flags shared by the pipeline scripts: --preset and --set section.key=value."""

from __future__ import annotations

import os

from absl import flags

from gpicl_tf import config as config_lib

flags.DEFINE_string("preset", "cpu", f"config preset: one of {sorted(config_lib.PRESETS)}")
flags.DEFINE_multi_string("set", [], "override a config value: --set train.batch_size=32")
FLAGS = flags.FLAGS


def resolve_config() -> config_lib.Config:
    """The preset named by --preset with every --set applied."""
    return config_lib.override(config_lib.get_preset(FLAGS.preset), FLAGS.set)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter (CUDA probes on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
