"""The version of a source checkout; pyproject.toml reads it when building."""

__version__ = "0.9.0"
