"""One worker of the MultiWorkerMirroredStrategy reproduction (see test_multi_worker.py).

Plain Keras 3 + TF: a functional model with a named input, a tf.data dataset,
model.fit under MultiWorkerMirroredStrategy. Prints FIT_OK or FIT_FAILED: <error>.
"""

import sys

import keras
import numpy as np
import tensorflow as tf


def main():
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x = np.random.default_rng(0).standard_normal((64, 5, 3)).astype("float32")
    y = np.zeros((64, 5), "int32")
    ds = tf.data.Dataset.from_tensor_slices(({"tokens": x}, y)).repeat().batch(8)
    with strategy.scope():
        tokens = keras.Input((None, 3), name="tokens")
        model = keras.Model({"tokens": tokens}, keras.layers.Dense(2)(tokens))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    except Exception as e:  # the reproduction reports whatever fit raises
        print(f"FIT_FAILED: {type(e).__name__}: {str(e)[:200]}", flush=True)
        sys.exit(0)
    print("FIT_OK", flush=True)


if __name__ == "__main__":
    main()
