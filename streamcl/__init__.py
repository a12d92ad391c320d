"""streamcl: an online continual learner for event streams.

Data flow: source (``streamcl.connectors``) -> decode (:mod:`streamcl.events`) ->
featurize (:mod:`streamcl.learning.features`) -> learner (:mod:`streamcl.learning.learner`) ->
prequential loop (:mod:`streamcl.stream.prequential`) -> serve (:mod:`streamcl.serving.api`) and
metrics (:mod:`streamcl.metrics`); :mod:`streamcl.service` wires it together.
"""

__version__ = "0.1.0"
