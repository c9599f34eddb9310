"""Turn a checkpoint of the original TF1 code into this project's checkpoint.

Usage: the flags of the run that wrote the checkpoint (as for main.py), the checkpoint's
prefix, and a --logdir; then test, export or compare it with main.py and the same flags:
    python import_tf1_checkpoint.py --tf1_checkpoint=PATH/model59000 \
        --datasource=miniimagenet --num_classes=5 --meta_batch_size=4 --update_batch_size=1 \
        --update_lr=0.01 --num_updates=5 --num_filters=32 --max_pool=True \
        --logdir=logs/miniimagenet1shot_authors
    python main.py <the same flags> --train=False --test_set=True

This file only reads flags; the work is done by maml_tf.tf1_import.import_checkpoint.
"""
import sys

import maml_tf  # noqa: F401  (oneDNN on, quiet logs: before TensorFlow loads)

from absl import app, logging  # noqa: E402

from flags import common  # noqa: E402
from flags import tf1_import as import_flags  # noqa: E402  (defines the flags)


def record_import(cfg) -> None:
    """config.json for the imported run, as a training writes it, so test and export with
    --logdir alone find its configuration."""
    import dataclasses

    from maml_tf import experiment
    from maml_tf.run_folder import compare_settings
    compare_settings(cfg.experiment_dir, experiment.run_settings(cfg),
                     experiment.FIXED_SETTINGS, compare=False, config=dataclasses.asdict(cfg),
                     experiment=import_flags.FLAGS.experiment)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    cfg, prefix, iteration = import_flags.import_request_from_flags()
    from data_generators.factory import model_dimensions
    from maml_tf.checkpoint import CheckpointError
    from maml_tf.run_folder import RunFolderError
    from maml_tf.tf1_import import import_checkpoint
    try:
        import_checkpoint(cfg, prefix, model_dimensions(cfg), iteration)
        record_import(cfg)
    except (CheckpointError, RunFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_with_experiment(("import",)))
