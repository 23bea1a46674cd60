"""Sequence learners: `build_model(model_config, schema)`."""

from gpicl_tf.models.sequence_models import build_model, query_logits, state_size  # noqa: F401
