"""Ways to damage a saved checkpoint (shared by tests/test_crash_safety.py and
scripts/fault_injection.py), each what a crash, a full disk or bit rot can leave behind.

``prefix`` is a checkpoint's path without its suffix (``<dir>/ckpt-N``); the state file is
TensorFlow's ``checkpoint`` next to it.
"""
from __future__ import annotations

import glob
import os

DAMAGES = ("empty index", "truncated index", "truncated data", "flipped data byte",
           "flipped data bytes", "missing data", "missing state file", "garbled state file")


def damage_checkpoint(prefix: str, how: str) -> None:
    """Damages the checkpoint ``prefix`` in the way ``how`` (one of :data:`DAMAGES`):
    "flipped data byte" inverts the middle byte of the data, "flipped data bytes" every
    997th byte from the 100th."""
    if how not in DAMAGES:
        raise ValueError(f"unknown damage {how!r}; one of {', '.join(DAMAGES)}")
    data = (glob.glob(glob.escape(prefix) + ".data-*") or [None])[0]
    index = prefix + ".index"
    state = os.path.join(os.path.dirname(prefix), "checkpoint")
    if how == "empty index":
        open(index, "w").close()
    elif how == "truncated index":
        content = open(index, "rb").read()
        open(index, "wb").write(content[:len(content) // 2])
    elif how == "truncated data":
        content = open(data, "rb").read()
        open(data, "wb").write(content[:len(content) // 3])
    elif how.startswith("flipped data byte"):
        content = bytearray(open(data, "rb").read())
        positions = (range(100, len(content), 997) if how.endswith("bytes")
                     else [len(content) // 2])
        for position in positions:
            content[position] ^= 0xFF
        open(data, "wb").write(bytes(content))
    elif how == "missing data":
        os.remove(data)
    elif how == "missing state file":
        os.remove(state)
    else:   # garbled state file
        open(state, "w").write("\x00garbage{{")
