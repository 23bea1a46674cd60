"""The `gpicl` command: one subcommand per pipeline stage.

    gpicl --help                      # the stages, one line each
    gpicl train --help                # a stage's own flags
    gpicl run --preset smoke --workdir runs/smoke

`gpicl NAME ARGS...` runs the stage's module exactly as `python -m pipelines.MODULE
ARGS...` does (its absl flags, --help, exit codes: 2 for bad input), so both
spellings stay interchangeable. Installed by `pip install .` as a console script;
in a source checkout, `python -m pipelines.cli` is the same command.
"""

from __future__ import annotations

import runpy
import sys

# subcommand -> (module under pipelines/, what it does in one line)
COMMANDS = {
    "run": ("run", "the main job: episodes, meta-training, evaluation against baselines, "
            "export, report"),
    "make-episodes": ("make_episodes", "write augmented task episodes as sharded TFRecords "
                      "with a manifest"),
    "inspect": ("inspect_episodes", "check every file of an episode directory against its "
                "manifest"),
    "train": ("train",
              "meta-train a sequence learner (Transformer, LSTM, MLP, MAML, VSML) on episodes"),
    "train-cell": ("train_cell", "meta-train the cell (tabular) learner on prior tables; "
                   "optionally export it"),
    "evaluate": ("evaluate", "meta-test learners against baselines on the same episodes"),
    "export": ("export", "export a finished run as the next SavedModel version for TF "
               "Serving"),
    "serve": ("serve", "a local server with TF Serving's REST API (and optionally gRPC)"),
    "study": ("study", "run a named study of the paper's phenomena: a grid of runs, cached "
              "per cell"),
    "tune": ("tune", "Keras Tuner search over model size, optimiser and curriculum"),
    "data-service": ("data_service", "a tf.data service dispatcher or worker for "
                     "`gpicl train --data_service`"),
}


def usage() -> str:
    """The overview `gpicl --help` prints."""
    from gpicl_tf import __version__

    width = max(len(name) for name in COMMANDS)
    lines = [f"gpicl {__version__}: general-purpose in-context learning in TensorFlow/Keras",
             "", "usage: gpicl COMMAND [FLAGS...]    (gpicl COMMAND --help: its flags)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    lines += ["", "Every command is also `python -m pipelines.MODULE` with the same flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatches `gpicl NAME ARGS...` to the stage's module; returns an exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from gpicl_tf import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"gpicl: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = f"pipelines.{COMMANDS[name][0]}"
    sys.argv = [module, *argv[1:]]   # runpy puts the module's file in argv[0]
    runpy.run_module(module, run_name="__main__", alter_sys=True)   # absl exits itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
