"""Meta-test evaluation: learners and baselines on the same episodes."""
