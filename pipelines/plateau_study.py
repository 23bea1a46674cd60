"""The plateau study: steps until meta-training leaves the loss plateau, per intervention.

    python -m pipelines.plateau_study --preset cpu --workdir runs/plateau \
        --episodes tfrecords/cpu [--steps 2000] [--variants "pfn layout, no intervention"]

Runs the variants of gpicl_tf.plateau.VARIANTS one after another (about 10-15
minutes each here at 2,000 steps: run it in the background) and writes
plateau.md (the table, with each row's command), plateau.json and
plateau_loss.png under --workdir. A finished variant is not trained again.
"""

from absl import flags

from pipelines import common

flags.DEFINE_string("workdir", None, "study directory", required=True)
flags.DEFINE_string("episodes", None, "episode directory", required=True)
flags.DEFINE_integer("steps", 2000, "meta-training steps per variant")
flags.DEFINE_multi_string("variants", [], "variant names (default: all)")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    common.quiet_tensorflow()
    import os

    from gpicl_tf import plateau
    from gpicl_tf.data import storage

    names = FLAGS.variants or list(plateau.VARIANTS)
    unknown = [n for n in names if n not in plateau.VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(plateau.VARIANTS)}")
    base = common.resolve_config()
    rows = plateau.study(base, FLAGS.workdir, FLAGS.episodes,
                         {n: plateau.VARIANTS[n] for n in names}, FLAGS.steps)
    command = (f"python -m pipelines.train --preset {FLAGS.preset} --episodes "
               f"{FLAGS.episodes}" + "".join(f" --set {s}" for s in FLAGS.set))
    table = plateau.markdown(rows, command)
    with storage.atomic_path(os.path.join(FLAGS.workdir, "plateau.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(table)
    plateau.plot(rows, os.path.join(FLAGS.workdir, "plateau_loss.png"))
    print(table)


if __name__ == "__main__":
    common.run(main)
