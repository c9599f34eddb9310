"""Reinforcement-learning MAML (MAML-TRPO), section 5.3 of the paper."""
