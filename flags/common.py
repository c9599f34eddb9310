"""Flag checks that the supervised and the RL command lines share."""
from absl import flags


def register_export_dir_validator():
    """``--export_dir`` must be empty, new, or an earlier SavedModel that may be replaced.

    Each entry point defines its own ``--export_dir``; this registers the one check on it.
    """
    @flags.validator("export_dir")
    def _export_dir_usable(path):
        from maml_tf.run_folder import export_dir_problem  # imported when validated
        problem = export_dir_problem(path) if path else None
        if problem:
            raise flags.ValidationError(f"--export_dir: {problem}")
        return True


def define_experiment_flags(kinds) -> None:
    """``--experiment`` and ``--logroot``: a named preset (flags/experiments.py) of this entry
    point. The preset's flags are inserted before the command line's by
    :func:`parse_with_experiment` (so explicit flags win); these definitions give the names
    their help text and a clear error for a name this entry point does not run."""
    from flags import experiments

    flags.DEFINE_string("experiment", None, "a named preset: its flags, then the command "
                        "line's (an explicit flag wins); `./run.sh list` or `python -m "
                        "flags.experiments list` shows the names")
    flags.DEFINE_string("logroot", experiments.DEFAULT_LOGROOT, "with --experiment: root of "
                        "the preset's log folder (run.sh's $LOGROOT); --logdir wins")

    @flags.validator("experiment")
    def _known_experiment(name):
        if name is None:
            return True
        try:
            kind = experiments.entry_kind(name)
        except experiments.UnknownExperiment as error:
            raise flags.ValidationError(str(error))
        if kind not in kinds:
            raise flags.ValidationError(f"{name} is run by {experiments.ENTRY_POINTS[kind]}")
        return True


def parse_with_experiment(kinds):
    """An ``app.run`` flags parser that expands ``--experiment=NAME`` first."""
    import sys

    from absl import app

    from flags import experiments

    def parse(argv):
        try:
            argv = experiments.expand_argv(argv, kinds)
        except ValueError as error:   # unknown name or another entry point's preset
            print(f"FATAL Flags parsing error: --experiment: {error}", file=sys.stderr)
            sys.exit(1)
        return app.parse_flags_with_usage(argv)
    return parse
