"""The learner's serving snapshot: re-exported from :mod:`streamcl.models.predictor`.

The prediction side lives in :mod:`streamcl.models` so serving replicas load it without the
training code.
"""

from streamcl.models.predictor import Prediction, Snapshot, combine, softmax, to_predictions

__all__ = ["Prediction", "Snapshot", "combine", "softmax", "to_predictions"]
