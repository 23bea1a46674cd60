"""One helper that tests every gpicl_tf layer the same way (keras-hub's habit)."""

import keras
import numpy as np


def check_layer(layer_cls, init_kwargs: dict, inputs, call_kwargs: dict | None = None,
                expected_shape=None) -> None:
    """Builds `layer_cls(**init_kwargs)`, calls it on `inputs` and checks: the output
    shape, that `get_config()` round-trips through `from_config` to an identical
    config, that a layer rebuilt from its config with the same weights gives the
    same output, and that the output is finite and deterministic."""
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    out = np.asarray(layer(inputs, **call_kwargs))
    if expected_shape is not None:
        assert out.shape == tuple(expected_shape), (out.shape, expected_shape)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, np.asarray(layer(inputs, **call_kwargs)))
    config = layer.get_config()
    twin = layer_cls.from_config(config)
    assert twin.get_config() == config
    twin(inputs, **call_kwargs)
    twin.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(twin(inputs, **call_kwargs)), out, atol=1e-6)
    assert len(layer.weights) == len(twin.weights)
    assert all(isinstance(w, keras.Variable) for w in layer.weights)
