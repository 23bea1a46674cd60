"""The cell backbone: shapes, what each row may read, masking, missing values, round trips,
and the same model under Keras' JAX backend."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.models.cell import MASKED_LOGIT, CellBlock, CellTransformer
from tests.layer_testing import check_layer


def _model(**kw):
    model = CellTransformer(**{**dict(num_classes=4, model_size=16, num_layers=2, num_heads=2,
                                      max_features=8, id_size=4), **kw})
    model.build()
    return model


def _table(b=2, n=10, q=5, c=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"context_x": rng.standard_normal((b, n, c)).astype(np.float32),
            "context_y": (np.arange(n) % k)[None].repeat(b, 0).astype(np.int32),
            "query_x": rng.standard_normal((b, q, c)).astype(np.float32)}


def test_shapes_and_absent_classes_are_masked():
    model = _model()
    out = np.asarray(model(_table(k=3)))
    assert out.shape == (2, 5, 4)
    assert np.all(out[..., 3] == MASKED_LOGIT)          # class 3 never in the context
    assert np.all(out[..., :3] > MASKED_LOGIT / 2)


def test_a_test_row_reads_the_training_rows_only():
    model, t = _model(), _table()
    base = np.asarray(model(t))
    other = dict(t, query_x=t["query_x"].copy())
    other["query_x"][:, 1:] += 5.0                       # every other test row changes
    np.testing.assert_allclose(np.asarray(model(other))[:, 0], base[:, 0], atol=1e-5)
    changed = dict(t, context_x=t["context_x"].copy())
    changed["context_x"][:, 0] += 5.0                    # a training row changes
    assert np.abs(np.asarray(model(changed))[:, 0] - base[:, 0]).max() > 1e-4


def test_training_row_order_does_not_matter():
    model, t = _model(), _table()
    order = np.random.default_rng(1).permutation(10)
    shuffled = dict(t, context_x=t["context_x"][:, order], context_y=t["context_y"][:, order])
    np.testing.assert_allclose(np.asarray(model(shuffled)), np.asarray(model(t)), atol=1e-4)


def test_columns_are_standardised_with_the_training_rows():
    """A column's affine rescaling (same on training and test rows) changes nothing."""
    model, t = _model(), _table()
    scaled = {k: v.copy() for k, v in t.items()}
    for key in ("context_x", "query_x"):
        scaled[key][..., 1] = scaled[key][..., 1] * 1e4 + 3e4
    np.testing.assert_allclose(np.asarray(model(scaled)), np.asarray(model(t)), atol=1e-3)


def test_missing_values_give_finite_answers_and_matter():
    model, t = _model(), _table()
    holes = {k: v.copy() for k, v in t.items()}
    holes["context_x"][:, ::2, 0] = np.nan
    holes["query_x"][:, 0, :] = np.nan                   # a test row with nothing known
    out = np.asarray(model(holes))
    assert np.all(np.isfinite(out))
    assert np.abs(out - np.asarray(model(t))).max() > 1e-4


def test_any_column_count_up_to_the_maximum():
    model = _model()
    for c in (1, 8):
        assert np.asarray(model(_table(c=c))).shape == (2, 5, 4)


def test_column_identities_are_given_or_the_fixed_table():
    model, t = _model(), _table()
    np.testing.assert_array_equal(np.asarray(model(t)), np.asarray(model(t)))
    fixed = np.asarray(model.column_ids)[:3][None].repeat(2, 0)
    np.testing.assert_allclose(np.asarray(model(dict(t, column_ids=fixed))),
                               np.asarray(model(t)), atol=1e-6)
    other = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float32)
    assert np.abs(np.asarray(model(dict(t, column_ids=other))) -
                  np.asarray(model(t))).max() > 1e-5


def test_cell_block_with_the_layer_helper():
    x = np.random.default_rng(0).standard_normal((2, 7, 4, 16)).astype(np.float32)
    check_layer(CellBlock, {"model_size": 16, "num_heads": 2, "mlp_ratio": 3}, x,
                {"num_context": 5}, expected_shape=(2, 7, 4, 16))


def test_transformer_block_with_the_layer_helper():
    from gpicl_tf.models.layers import TransformerBlock, attention_mask

    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    check_layer(TransformerBlock, {"model_size": 16, "num_heads": 2, "key_size": 8}, x,
                {"attention_mask": attention_mask(5, "paper")}, expected_shape=(2, 5, 16))


def test_save_load_round_trip(tmp_path):
    model, t = _model(), _table()
    path = str(tmp_path / "cell.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(np.asarray(loaded(t)), np.asarray(model(t)), atol=1e-6)


@pytest.mark.parametrize("kw, match", [
    ({"num_heads": 3}, "num_heads=3 does not divide cell.model_size=16"),
    ({"num_layers": 0}, "num_layers=0"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_bad_sizes_are_named(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        _model(**kw)


JAX_SCRIPT = textwrap.dedent("""
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from gpicl_tf.models.cell import CellTransformer
    model = CellTransformer(num_classes=3, model_size=8, num_layers=1, num_heads=2,
                            max_features=4, id_size=2)
    model.build()
    rng = np.random.default_rng(0)
    x = {"context_x": rng.standard_normal((4, 12, 3)).astype("float32"),
         "context_y": (np.arange(12) % 3)[None].repeat(4, 0).astype("int32"),
         "query_x": rng.standard_normal((4, 6, 3)).astype("float32")}
    y = (np.arange(6) % 3)[None].repeat(4, 0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = float(model.evaluate(x, y, verbose=0))
    model.fit(x, y, epochs=20, batch_size=4, verbose=0)
    after = float(model.evaluate(x, y, verbose=0))
    assert after < before, (before, after)
    model.save_weights(OUT)
    np.save(OUT + ".npy", np.asarray(model(x)))
""")


@pytest.mark.slow
def test_trains_under_the_jax_backend_and_its_weights_load_into_tensorflow(tmp_path):
    pytest.importorskip("jax")
    out = str(tmp_path / "jax.weights.h5")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", f"OUT = {out!r}\n" + JAX_SCRIPT], env=env,
                   check=True, timeout=300, cwd=os.path.dirname(os.path.dirname(
                       os.path.dirname(os.path.abspath(__file__)))))
    model = CellTransformer(num_classes=3, model_size=8, num_layers=1, num_heads=2,
                            max_features=4, id_size=2)
    model.build()
    model.load_weights(out)
    rng = np.random.default_rng(0)
    x = {"context_x": rng.standard_normal((4, 12, 3)).astype("float32"),
         "context_y": (np.arange(12) % 3)[None].repeat(4, 0).astype("int32"),
         "query_x": rng.standard_normal((4, 6, 3)).astype("float32")}
    np.testing.assert_allclose(np.asarray(model(x)), np.load(out + ".npy"), atol=1e-4)


def test_the_fixed_identity_table_has_the_scale_of_the_drawn_ones():
    model = _model(max_features=64, id_size=8)
    assert 0.8 < float(np.asarray(model.column_ids).std()) < 1.2
    model.column_ids.assign(np.asarray(model.column_ids) * 0.05)   # an early model's table
    model.redraw_column_ids()
    first = np.asarray(model.column_ids).copy()
    assert 0.8 < first.std() < 1.2
    model.redraw_column_ids()
    np.testing.assert_array_equal(np.asarray(model.column_ids), first)   # seeded
