"""Supervised MAML (sinusoid, Omniglot, MiniImagenet): the original main.py's command line.

Usage (the original's usage lines; see run.sh for all of them):
    10-shot sinusoid:
        python main.py --datasource=sinusoid --logdir=logs/sine/ --metatrain_iterations=70000 \
            --norm=None --update_batch_size=10 --update_lr=0.01
    10-shot sinusoid baselines:
        python main.py --datasource=sinusoid --logdir=logs/sine_oracle/ \
            --pretrain_iterations=70000 --metatrain_iterations=0 --norm=None \
            --update_batch_size=10 --baseline=oracle
    To evaluate, add --train=False (and --test_set=True for the classification test split).

This file only reads flags and wires the data layer to the engine: the work is done by
maml_tf.experiment.run, with data_generators' task sources.
"""

import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

from absl import app, logging  # noqa: E402

from flags import common  # noqa: E402
from flags import supervised as supervised_flags  # noqa: E402  (defines the flags)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint chatter
    cfg = supervised_flags.config_from_flags()
    from data_generators.base import DataError
    from data_generators.factory import build_task_sources
    from maml_tf.checkpoint import CheckpointError
    from maml_tf.distribute import DistributeError
    from maml_tf.experiment import run
    from maml_tf.export import ExportError
    from maml_tf.run_folder import RunFolderError
    from maml_tf.run_record import resolve_for_test
    from maml_tf.runtime import set_intra_op_threads
    from maml_tf.stopping import StopSignals, exit_status

    def body():
        # test mode (and its export) takes what the command line leaves out from config.json
        tested = resolve_for_test(cfg, supervised_flags.explicit_flags())
        set_intra_op_threads(tested.intra_op_parallelism)   # before TensorFlow's first op
        # Ctrl-C and SIGTERM (also for runs started in the background, where a shell ignores
        # SIGINT) let the iteration running finish, save its checkpoint and exit with one line.
        with StopSignals() as stop:
            run(tested, build_task_sources, stop=stop, preset=supervised_flags.FLAGS.experiment)
    return exit_status(body, (DataError, CheckpointError, RunFolderError, ExportError,
                              DistributeError))


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_with_experiment(("supervised",)))
