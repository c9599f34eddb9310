"""Task distributions of section 5.3: point-robot navigation, half-cheetah and ant locomotion.

Every environment is a ``gymnasium.Env`` with ``sample_tasks(n, rng)`` / ``set_task(task)``;
``registry.make_vector_env`` builds the batched form the sampler steps.
"""
