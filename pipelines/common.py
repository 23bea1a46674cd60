"""Flags shared by the pipeline scripts: --preset, --config and --set section.key=value."""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from gpicl_tf import config as config_lib

flags.DEFINE_string("preset", "cpu", f"config preset: one of {sorted(config_lib.PRESETS)}")
flags.DEFINE_string("config", None, "a config JSON file (e.g. a search's best_config.json), "
                    "used instead of --preset")
flags.DEFINE_multi_string("set", [], "override a config value: --set train.batch_size=32")
FLAGS = flags.FLAGS


def resolve_config() -> config_lib.Config:
    """--config's file, else the preset named by --preset, with every --set applied."""
    if FLAGS.config:
        with open(FLAGS.config) as f:
            base = config_lib.Config.from_json(f.read())
    else:
        base = config_lib.get_preset(FLAGS.preset)
    return config_lib.override(base, FLAGS.set)


def resolve_cell_config():
    """The cell learner's `CellRunConfig`: --config's file (`read_cell_config`), else
    the cell preset --preset names, with every --set applied. Both flags given is an
    error (which one would win is not obvious)."""
    from gpicl_tf.config import cell
    from gpicl_tf.errors import InvalidInputError

    if FLAGS.config:
        if FLAGS["preset"].present:
            raise InvalidInputError(f"--config={FLAGS.config!r} and --preset={FLAGS.preset!r} "
                                    "both given: a config file replaces the preset; give one")
        base = read_cell_config(FLAGS.config)
    else:
        base = cell.get_cell_preset(FLAGS.preset)
    return config_lib.override(base, FLAGS.set)


def read_cell_config(path: str):
    """A `CellRunConfig` from a JSON file: its sections as `CellRunConfig.to_json`
    writes them, or a cell run's config.json ({"config": sections}). A section or key
    it lacks takes the dataclass default; an unknown one is an error naming it."""
    from gpicl_tf.config.cell import CellRunConfig
    from gpicl_tf.errors import GpiclError, InvalidInputError, MissingFileError

    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise MissingFileError(f"--config={path!r}: no such file") from None
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"--config={path!r} is not JSON: {e}") from None
    if isinstance(d, dict) and set(d) == {"config"}:       # a cell run's config.json
        d = d["config"]
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise InvalidInputError(f"--config={path!r} does not hold the config's sections as "
                                "JSON objects ({\"model\": {...}, \"train\": {...}, ...})")
    try:
        return CellRunConfig.from_dict(d)
    except GpiclError as e:
        raise type(e)(f"--config={path!r}: {e}") from None


def overridden_keys() -> list[str]:
    """The "section.key" names that --set assigns, in order."""
    return [item.split("=", 1)[0].strip() for item in FLAGS.set if "=" in item]


def run(main) -> None:
    """absl's app.run, with bad input (a `gpicl_tf.errors.GpiclError`) reported as
    one line naming it (exit 2); any other exception keeps its traceback.

    The process first re-executes itself with tcmalloc preloaded where that is
    installed (gpicl_tf.runtime: about 1.5x faster train steps here).
    """
    from absl import app, logging

    from gpicl_tf import runtime

    allocator = runtime.use_tcmalloc()

    def guarded(argv):
        from gpicl_tf.errors import GpiclError

        logging.info("memory allocator: %s", allocator)
        try:
            return main(argv)
        except GpiclError as e:  # bad input: one line naming it; anything else is a bug
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter (CUDA probes on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
