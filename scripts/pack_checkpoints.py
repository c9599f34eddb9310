"""Copy the latest checkpoint of long runs into ``checkpoints/`` so they survive a new checkout.

    .venv/bin/python scripts/pack_checkpoints.py logs/omniglot5way logs/rl/cheetah_vel_maml
    # later, on a fresh checkout:
    mkdir -p logs && cp -rn checkpoints/. logs/ && ./run.sh omniglot_5way_1shot   # resumes

Why: ``logs/`` is not versioned (events files and every checkpoint are large), but a
60,000-iteration run spans several sessions. For every experiment directory below the given
folders this copies only the newest ``ckpt-N`` files (model and optimizer state) plus a
``checkpoint`` state file naming just that one, keeping the path relative to the repository
root, and any test CSVs. A ``best/`` sub-folder (the RL trainer's best policy) is packed too.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pack_directory(directory: str, destination_root: str) -> list[str]:
    """Packs ``directory`` if it holds checkpoints; returns the files written."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        return []
    relative = os.path.relpath(directory, ROOT)
    target = os.path.join(destination_root, os.path.relpath(relative, "logs")
                          if relative.startswith("logs") else relative)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.makedirs(target)
    written = []
    prefix = os.path.basename(latest)
    for name in os.listdir(directory):
        if name.startswith(prefix + ".") or name.endswith(".csv"):
            shutil.copy2(os.path.join(directory, name), os.path.join(target, name))
            written.append(os.path.join(target, name))
    tf.compat.v1.train.update_checkpoint_state(target, prefix,
                                               all_model_checkpoint_paths=[prefix])
    written.append(os.path.join(target, "checkpoint"))
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders below logs/")
    parser.add_argument("--out", default=os.path.join(ROOT, "checkpoints"))
    args = parser.parse_args()
    for folder in args.folders:
        if not os.path.isdir(folder):
            sys.exit(f"error: {folder} is not a folder")
        for current, _, _ in os.walk(folder):
            for path in pack_directory(os.path.abspath(current), args.out):
                print(path)


if __name__ == "__main__":
    main()
