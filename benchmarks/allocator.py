"""Train-step time on glibc's malloc against tcmalloc, measured in one run.

    python benchmarks/allocator.py [--presets cpu,digits_long] [--steps 40] [--repeats 2]

Each measurement is a fresh process (the allocator is chosen when a process
starts): one with GPICL_TCMALLOC=0 and no LD_PRELOAD, one with tcmalloc
preloaded; the two alternate, `--repeats` times each. Prints ms/step per
allocator (the best of the repeats, then all of them) and the speed-up. About
3-4 minutes here. Needs tcmalloc installed (Debian: libtcmalloc-minimal4;
scripts/env.sh installs it as root).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(preset: str, steps: int) -> None:
    sys.path[:0] = [ROOT, HERE]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from train_step import step_rate

    from gpicl_tf import runtime
    from gpicl_tf.config import get_preset

    rate = step_rate(get_preset(preset), steps)
    print(json.dumps({"allocator": runtime.allocator_in_use(),
                      "ms": rate["sec_per_step"] * 1e3}))


def measure(preset: str, steps: int, tcmalloc: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GPICL_TCMALLOC_REEXECUTED")}
    if tcmalloc:
        env["LD_PRELOAD"] = tcmalloc
    else:
        env["GPICL_TCMALLOC"] = "0"
    done = subprocess.run([sys.executable, __file__, "--child", preset, "--steps", str(steps)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="cpu,digits_long")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)
    sys.path.insert(0, ROOT)
    from gpicl_tf import runtime

    path = runtime.find_tcmalloc({})
    if path is None:
        sys.exit(f"tcmalloc not found in {runtime.CANDIDATES}: apt-get install "
                 "libtcmalloc-minimal4")
    for preset in args.presets.split(","):
        times = {"glibc malloc": [], "tcmalloc": []}
        for _ in range(args.repeats):
            for lib in (None, path):
                r = measure(preset, args.steps, lib)
                want = "tcmalloc" if lib else "glibc malloc"
                if r["allocator"] != want:
                    sys.exit(f"the child ran on {r['allocator']}, not {want}")
                times[want].append(r["ms"])
        glibc, tc = min(times["glibc malloc"]), min(times["tcmalloc"])
        print(f"{preset}: glibc malloc {glibc:.0f} ms/step, tcmalloc {tc:.0f} ms/step: "
              f"{glibc / tc:.2f}x (all runs, ms: glibc "
              f"{', '.join(f'{t:.0f}' for t in times['glibc malloc'])}; tcmalloc "
              f"{', '.join(f'{t:.0f}' for t in times['tcmalloc'])})")


if __name__ == "__main__":
    main()
