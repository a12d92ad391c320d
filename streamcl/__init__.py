"""streamcl: an online continual learner for event streams.

Data flow: source (``streamcl.connectors``) -> decode (:mod:`streamcl.events`) ->
featurize (:mod:`streamcl.features`) -> learner (:mod:`streamcl.learner`) ->
prequential loop (:mod:`streamcl.prequential`) -> serve (:mod:`streamcl.api`) and
metrics (:mod:`streamcl.metrics`); :mod:`streamcl.service` wires it together.
"""

__version__ = "0.1.0"
