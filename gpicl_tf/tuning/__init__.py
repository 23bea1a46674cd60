"""Keras Tuner searches over the meta-learner."""
