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
# TensorFlow's CPU train step is ~1.5x faster on tcmalloc (benchmarks/allocator.py).
if [ -n "$tcmalloc" ] && [ "${GPICL_TCMALLOC:-auto}" != 0 ]; then
  export LD_PRELOAD="$tcmalloc${LD_PRELOAD:+ $LD_PRELOAD}"
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
