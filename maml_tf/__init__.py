"""maml-tf2: Model-Agnostic Meta-Learning (Finn, Abbeel, Levine 2017) in TensorFlow 2 / Keras 3."""
