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


def test_attend_is_the_attention_layers_own_call():
    """`attend` computes what Keras' MultiHeadAttention computes with the same
    weights (queries and a shorter context), to float32 rounding."""
    from gpicl_tf.models.cell_layers import attend

    rng = np.random.default_rng(1)
    layer = keras.layers.MultiHeadAttention(4, 6)
    query = rng.standard_normal((3, 7, 24)).astype(np.float32)
    context = rng.standard_normal((3, 5, 24)).astype(np.float32)
    layer(query, context)                                 # builds the weights
    for w in layer.weights:                               # biases off zero: they count too
        w.assign(rng.standard_normal(w.shape).astype(np.float32) * 0.3)
    want = np.asarray(layer(query, context))
    np.testing.assert_allclose(np.asarray(attend(layer, query, context)), want, atol=2e-5)
    assert np.abs(want).max() > 0.1


def test_a_block_asked_for_the_test_rows_returns_just_those():
    """first_output_row: the block's output rows from there on, as the whole
    block's (the model's last layer skips the training rows' updates)."""
    block = CellBlock(16, 2, 2)
    x = np.random.default_rng(2).standard_normal((2, 9, 4, 16)).astype(np.float32)
    whole = np.asarray(block(x, num_context=6))
    tail = np.asarray(block(x, num_context=6, first_output_row=6))
    assert tail.shape == (2, 3, 4, 16)
    np.testing.assert_allclose(tail, whole[:, 6:], atol=1e-5)


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


# ---- the 2026 small-compute recipe's options (issue 38) -----------------------------

RELEASED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "gpicl_tf", "released", "tabular", "2")
OPTIONS = {"feature_groups": (1, 3, 7, 15), "thinking_rows": 3, "norm": "rms",
           "residual_decay": 0.95, "scalar_embedding": "rbf", "decoder": "mean"}


def _copy_shared_weights(source, target) -> int:
    """Copies every weight of `source` whose path and shape `target` shares; returns
    how many it copied."""
    weights = {w.path.split("/", 1)[1]: w for w in source.weights}
    copied = 0
    for w in target.weights:
        twin = weights.get(w.path.split("/", 1)[1])
        if twin is not None and tuple(twin.shape) == tuple(w.shape):
            w.assign(np.asarray(twin))
            copied += 1
    return copied


def test_the_default_model_is_the_released_one():
    """The released version's serving graph (traced by the code that trained it)
    answers as today's model loaded from its Keras file, and a model rebuilt from
    its stored config (which lacks the recipe's options) with its weights gives
    bit-identical logits."""
    import json
    import zipfile

    import tensorflow as tf

    keras_file = os.path.join(RELEASED, "assets.extra", "cell_model.keras")
    loaded = keras.models.load_model(keras_file, compile=False)
    with zipfile.ZipFile(keras_file) as z:
        stored = json.loads(z.read("config.json"))["config"]
    assert not set(OPTIONS) & set(stored)                 # an old config, without them
    t = _table(n=20, q=7, c=5)
    t["context_x"][0, 3, 1] = np.nan
    logits = np.asarray(loaded(t))
    served = tf.saved_model.load(RELEASED).signatures["serving_default"]
    probabilities = served(context_x=tf.constant(t["context_x"]),
                           context_y=tf.constant(t["context_y"], tf.int64),
                           query_x=tf.constant(t["query_x"]))["probabilities"].numpy()
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(logits)), probabilities, atol=2e-6)
    rebuilt = CellTransformer(**{k: v for k, v in stored.items()
                                 if k not in ("name", "trainable", "dtype")})
    rebuilt.build()
    assert len(rebuilt.weights) == len(loaded.weights)
    rebuilt.set_weights(loaded.get_weights())
    np.testing.assert_array_equal(np.asarray(rebuilt(t)), logits)
    assert {k: loaded.get_config()[k] for k in OPTIONS} == {
        "feature_groups": [], "thinking_rows": 0, "norm": "layer", "residual_decay": 1.0,
        "scalar_embedding": "linear", "decoder": "label"}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_changes_the_answers_and_test_rows_stay_blind(option):
    base = _model(seed=3)
    model = _model(seed=3, **{option: OPTIONS[option]})
    assert _copy_shared_weights(base, model) >= len(model.weights) - 8
    t = _table(c=5)
    out = np.asarray(model(t))
    assert np.all(np.isfinite(out)) and out.shape == (2, 5, 4)
    assert np.abs(out - np.asarray(base(t)))[..., :3].max() > 1e-4, option
    other = dict(t, query_x=t["query_x"].copy())
    other["query_x"][:, 1:] += 5.0                       # every other test row changes
    np.testing.assert_allclose(np.asarray(model(other))[:, 0], out[:, 0], atol=1e-5)
    first = dict(t, query_x=t["query_x"].copy())
    first["query_x"][:, 0] += 5.0                        # the first test row changes
    np.testing.assert_allclose(np.asarray(model(first))[:, 1:], out[:, 1:], atol=1e-5)
    changed = dict(t, context_x=t["context_x"].copy())
    changed["context_x"][:, 0] += 5.0                    # a training row changes
    assert np.abs(np.asarray(model(changed))[:, 0] - out[:, 0]).max() > 1e-4
    order = np.random.default_rng(1).permutation(10)     # training rows in another order
    np.testing.assert_allclose(np.asarray(model(dict(
        t, context_x=t["context_x"][:, order], context_y=t["context_y"][:, order]))), out,
        atol=1e-4)


def _with_ids(t, c, seed=7):
    ids = np.random.default_rng(seed).standard_normal((2, c, 4)).astype(np.float32)
    return dict(t, column_ids=ids)


def _columns(t, order):
    return dict(t, context_x=t["context_x"][..., order], query_x=t["query_x"][..., order],
                column_ids=t["column_ids"][:, order])


@pytest.mark.parametrize("option", sorted(set(OPTIONS) - {"feature_groups"}))
def test_columns_in_another_order_with_their_identities_change_nothing(option):
    model, t = _model(**{option: OPTIONS[option]}), _with_ids(_table(c=5), 5)
    order = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(np.asarray(model(_columns(t, order))), np.asarray(model(t)),
                               atol=1e-4)


def test_feature_groups_follow_the_columns_cyclically():
    """A token holds its column and the columns 1, 3, ... further along (mod C): a
    cyclic shift of the columns (with their identities) leaves the answers as they
    are, another order does not; with the grouped part of the shared embedding at
    zero the model is the ungrouped one."""
    model, t = _model(feature_groups=(1, 3)), _with_ids(_table(c=5), 5)
    out = np.asarray(model(t))
    np.testing.assert_allclose(np.asarray(model(_columns(t, np.roll(np.arange(5), 2)))), out,
                               atol=1e-4)
    assert np.abs(np.asarray(model(_columns(t, np.array([1, 0, 2, 3, 4])))) - out).max() > 1e-4
    assert model.cell_embedding.kernel.shape == (6, 16)
    plain = _model()
    _copy_shared_weights(model, plain)
    kernel = np.asarray(model.cell_embedding.kernel).copy()
    plain.cell_embedding.kernel.assign(kernel[:2])
    kernel[2:] = 0.0
    model.cell_embedding.kernel.assign(kernel)
    np.testing.assert_allclose(np.asarray(model(t)), np.asarray(plain(t)), atol=1e-5)
    for c in (1, 2, 8):                                   # shifts beyond C wrap around
        assert np.all(np.isfinite(np.asarray(model(_table(c=c)))))


def test_rbf_features_are_the_value_its_bumps_and_the_flag():
    from gpicl_tf.models.cell_layers import cell_features

    z = np.array([[[-6.0, 0.0, 2.0, 0.0]]], np.float32)
    flags = np.array([[[0.0, 0.0, 0.0, 1.0]]], np.float32)
    f = np.asarray(cell_features(z, flags, "rbf", 5, 6.0))         # centres -6, -3, 0, 3, 6
    assert f.shape == (1, 1, 4, 7)
    np.testing.assert_allclose(f[0, 0, :, 0], z[0, 0])
    np.testing.assert_allclose(f[0, 0, :, -1], flags[0, 0])
    np.testing.assert_allclose(f[0, 0, 0, 1:6], np.exp(-np.arange(5) ** 2.0), rtol=1e-6)
    np.testing.assert_allclose(f[0, 0, 2, 1:6], np.exp(-((2.0 - np.arange(-6, 7, 3)) / 3) ** 2),
                               rtol=1e-6)
    assert np.all(f[0, 0, 3, 1:6] == 0.0)                          # a missing cell: no bumps
    # with the bumps' rows of the embedding at zero the model is the linear one
    model, plain, t = _model(scalar_embedding="rbf", rbf_centers=5), _model(), _table()
    _copy_shared_weights(model, plain)
    kernel = np.asarray(model.cell_embedding.kernel).copy()
    plain.cell_embedding.kernel.assign(kernel[[0, 6]])
    kernel[1:6] = 0.0
    model.cell_embedding.kernel.assign(kernel)
    np.testing.assert_allclose(np.asarray(model(t)), np.asarray(plain(t)), atol=1e-5)


def test_thinking_rows_are_read_by_every_row_and_count_as_context():
    model, t = _model(thinking_rows=2), _table()
    out = np.asarray(model(t))
    thinking = np.asarray(model.thinking).copy()
    model.thinking.assign(thinking + np.random.default_rng(2).standard_normal(thinking.shape))
    assert np.abs(np.asarray(model(t)) - out).max() > 1e-4       # test rows read them
    model.thinking.assign(thinking)
    # one training row and one test row: still the thinking rows and that training row
    small = _table(n=1, q=1)
    assert np.all(np.isfinite(np.asarray(model(small))))
    assert model.thinking.shape == (2, 16) and model.get_config()["thinking_rows"] == 2


def test_residual_decay_scales_each_layer_and_rms_replaces_every_norm():
    model = _model(num_layers=3, residual_decay=0.9)
    assert [b.residual_scale for b in model.blocks] == pytest.approx([1.0, 0.9, 0.81])
    rms = _model(norm="rms")
    norms = [rms.output_norm] + [getattr(b, n) for b in rms.blocks
                                 for n in ("feature_norm", "row_norm", "feedforward_norm")]
    assert all(isinstance(n, keras.layers.RMSNormalization) for n in norms)
    assert not any(isinstance(layer, keras.layers.LayerNormalization)
                   for layer in rms._flatten_layers())


def test_every_option_at_once_saves_and_loads(tmp_path):
    model, t = _model(**OPTIONS, rbf_centers=6), _table(c=5)
    path = str(tmp_path / "cell.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(loaded(t)), np.asarray(model(t)))


@pytest.mark.parametrize("kw, match", [
    ({"feature_groups": (0, 1)}, r"feature_groups=\(0, 1\)"),
    ({"feature_groups": (1, 1)}, r"feature_groups=\(1, 1\)"),
    ({"thinking_rows": -1}, "thinking_rows=-1"),
    ({"norm": "batch"}, "norm='batch'"),
    ({"residual_decay": 0.0}, "residual_decay=0.0"),
    ({"residual_decay": 1.5}, "residual_decay=1.5"),
    ({"scalar_embedding": "spline"}, "scalar_embedding='spline'"),
    ({"rbf_centers": 1}, "rbf_centers=1"),
    ({"decoder": "cls"}, "decoder='cls'"),
])
def test_bad_options_are_named(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        _model(**kw)


def test_the_config_and_the_model_know_the_same_choices():
    from gpicl_tf.config import cell as config
    from gpicl_tf.models import cell_layers

    assert (config.CELL_NORMS, config.CELL_SCALAR_EMBEDDINGS, config.CELL_DECODERS) == (
        cell_layers.NORMS, cell_layers.SCALAR_EMBEDDINGS, cell_layers.DECODERS)
