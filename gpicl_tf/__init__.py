"""General-purpose in-context learning in TensorFlow/Keras (arXiv 2212.04458).

Transformers meta-trained on augmented tasks learn new tasks from the examples in
their context; exported as TF Serving SavedModels; `gpicl_tf.sklearn.GPICLClassifier`
is a scikit-learn estimator over a released model. Docs: docs/index.md.
"""

from importlib import metadata as _metadata

try:  # an installed copy: its distribution's version
    __version__ = _metadata.version("gpicl-tf")
except _metadata.PackageNotFoundError:  # a source checkout
    from gpicl_tf._version import __version__  # noqa: F401

