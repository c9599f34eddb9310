"""Reporting: our test results beside the paper's numbers, as tables and figures.

Kept apart from the engine (learning, checkpoints, evaluation): it only reads what runs wrote,
finds them where the registry's presets (flags/experiments.py) put them, and names result
files as the evaluation module does. ``paper`` loads docs/paper_numbers.json for every table;
``classification`` is Table 1, ``sinusoid`` the regression table and Figure 3, ``rl`` the
section 5.3 table and Figures 4/5. The command lines are ``python -m maml_tf.compare`` and
``python -m rl.compare``.
"""
