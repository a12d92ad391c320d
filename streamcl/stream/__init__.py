"""The stream loop around the learner.

Prequential scoring, delayed labels, de-duplication, checkpoints of state plus offsets, and
the Kafka wiring.
"""
