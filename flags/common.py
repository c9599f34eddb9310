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
