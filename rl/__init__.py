"""Reinforcement-learning MAML (MAML-TRPO), section 5.3 of the paper."""
import maml_tf  # noqa: F401  (TensorFlow's environment, set before TensorFlow loads)
