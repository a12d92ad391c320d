"""The learner: the model and everything it is made of.

Network, training, plasticity, memory, drift detection, combination, and the snapshot it
publishes for serving.
"""
