"""Process set-up that has to happen before TensorFlow is imported.

Why this exists: TensorFlow 2.21 switches its oneDNN CPU kernels on by default only on CPUs
with AVX512_VNNI, AVX512_BF16 or AMX. Elsewhere (AVX2-only CPUs such as AMD Zen 2/3) they are
off, and TensorFlow's own CPU kernels cannot differentiate the grouped convolutions the conv
nets use for their task-batched forward pass. oneDNN reads ``TF_ENABLE_ONEDNN_OPTS`` once,
when TensorFlow loads, so the variable has to be set before the first ``import tensorflow``.

``prepare_tensorflow()`` is called when the ``maml_tf`` package is imported, so every entry
point (``main.py``, ``python -m rl.main``, the scripts, the tests) gets it by importing
``maml_tf`` first. A value the user set is respected (``TF_ENABLE_ONEDNN_OPTS=0`` turns
oneDNN off; the conv nets then fall back to a per-task convolution, see
``maml_tf.conv_paths.grouped_conv_gradients_available``).

When oneDNN is switched on by this variable TensorFlow prints an informational line (twice)
before its logging is initialised, which ``TF_CPP_MIN_LOG_LEVEL`` cannot hide. The import is
therefore done with file descriptor 2 captured, and everything except those known lines is
written back to stderr unchanged.
"""
from __future__ import annotations

import os
import sys
import tempfile

# Lines TensorFlow writes while loading that carry no information for a user of this project.
_BENIGN_IMPORT_LINES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on.",
)


def prepare_tensorflow() -> None:
    """Default the TensorFlow environment for this project, then import TensorFlow quietly.

    Without effect on the oneDNN setting when TensorFlow was imported before (the build-time
    probe in ``maml_tf.conv_paths`` then decides which convolution path works).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "tensorflow" in sys.modules:
        return
    with _stderr_without(_BENIGN_IMPORT_LINES):
        import tensorflow  # noqa: F401


class _stderr_without:
    """Context manager: capture fd 2 (C++ and Python writes alike), replay all other lines."""

    def __init__(self, benign_fragments):
        self.benign = benign_fragments

    def __enter__(self):
        sys.stderr.flush()
        self.capture = tempfile.TemporaryFile(mode="w+b")
        self.saved_fd = os.dup(2)
        os.dup2(self.capture.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        sys.stderr.flush()
        os.dup2(self.saved_fd, 2)
        os.close(self.saved_fd)
        self.capture.seek(0)
        kept = [line for line in self.capture.read().decode(errors="replace").splitlines(True)
                if not any(fragment in line for fragment in self.benign)]
        self.capture.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        return False


def set_intra_op_threads(threads: int) -> int:
    """Threads per TensorFlow kernel for this process (0: leave TensorFlow's default).

    TensorFlow fixes its thread pools when the first op runs, so this belongs at an entry
    point, before any work. Called later (several runs in one process, as the tests do) it
    keeps the pools it has and warns instead of failing: the setting changes speed only.
    Returns the setting in force.
    """
    import tensorflow as tf
    if threads > 0 and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            from absl import logging
            logging.warning("TensorFlow is already initialised: keeping its %s intra-op "
                            "threads instead of %d (speed only)",
                            tf.config.threading.get_intra_op_parallelism_threads() or
                            "default", threads)
    return tf.config.threading.get_intra_op_parallelism_threads()


def machine_description() -> str:
    """CPU model, the vector extensions that change kernel speed and rounding, cores, oneDNN.

    Every speed figure is printed with this line: absolute times from different CPU models
    are not comparable (AVX-512 vs AVX2 alone is about 2x on convolutions).
    """
    fields = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    import platform
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    vector = sorted(f for f in flags if f == "avx2" or f.startswith("avx512"))
    return (f"{model}, {os.cpu_count()} cores, flags: {' '.join(vector) or 'no avx2/avx512'}, "
            f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}")
