"""pytest configuration: make the repository root importable, then set TensorFlow's
environment (oneDNN on unless the caller chose otherwise; quiet logs) before it loads."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maml_tf  # noqa: E402,F401
