"""maml-tf2: Model-Agnostic Meta-Learning (Finn, Abbeel, Levine 2017) in TensorFlow 2 / Keras 3.

Importing the package first sets TensorFlow's environment (oneDNN on unless the user chose
otherwise, quiet C++ logging) before TensorFlow loads: see ``maml_tf.runtime``.
"""
from maml_tf.runtime import prepare_tensorflow as _prepare_tensorflow

_prepare_tensorflow()
