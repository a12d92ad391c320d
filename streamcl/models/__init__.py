"""Model versions: the one format the learner and the serving replicas share, and its stores.

The prediction side of a model (:mod:`streamcl.models.predictor`: the snapshot and its numpy
forward pass, kNN vote and combination), the versioned artifact written from it
(:mod:`streamcl.models.version`), the stores it is written to (:mod:`streamcl.models.store`)
and the registry of versions, pointer and pin (:mod:`streamcl.models.registry`). Nothing here
imports the training code.
"""
