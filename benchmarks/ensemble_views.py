"""What a test-time ensemble of views gives a trained sequence learner.

    python benchmarks/ensemble_views.py RUN_OR_MODEL EPISODES [EPISODES ...]
        [--split test] [--episodes 256] [--members 1,4,16] [--no-rotation-too]

For each episode directory (its `--split`, the first `--episodes` episodes) and
each number of views: accuracy at the last position and over the last 10
positions of `evaluate.ensemble_probabilities`, with views that relabel the
classes only and (unless --no-rotation-too) with views that also rotate the
inputs; and the seconds each took. Members 1 is the plain pass.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import gpicl_tf.models  # noqa: E402,F401  (registers the layers)
from gpicl_tf.data import pipeline  # noqa: E402
from gpicl_tf.eval import evaluate  # noqa: E402
from gpicl_tf.training.train import MODEL_FILE  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="a run directory or a saved .keras learner")
    parser.add_argument("episode_dirs", nargs="+")
    parser.add_argument("--split", default="test")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--members", default="1,4,16")
    parser.add_argument("--no-rotation-too", dest="both", action="store_false")
    args = parser.parse_args()
    path = os.path.join(args.model, MODEL_FILE) if os.path.isdir(args.model) else args.model
    model = keras.models.load_model(path, compile=False)
    members = [int(m) for m in args.members.split(",")]
    for directory in args.episode_dirs:
        eps = pipeline.open_episodes(directory)
        x, y = evaluate.episode_arrays(eps, args.split, args.episodes)
        for m in members:
            for rotate in ((False, True) if args.both and m > 1 else (True,)):
                t0 = time.perf_counter()
                p = evaluate.ensemble_probabilities(model, x, y, eps.schema.num_classes, m,
                                                    rotate=rotate)
                correct = p.argmax(-1) == y
                views = "one pass" if m == 1 else \
                    f"{m} views, {'relabelled + rotated' if rotate else 'relabelled only'}"
                print(f"{os.path.basename(directory.rstrip('/'))} ({len(x)} episodes): {views}: "
                      f"last {correct[:, -1].mean():.3f}, last 10 {correct[:, -10:].mean():.3f} "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
