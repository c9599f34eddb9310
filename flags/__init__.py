"""absl flag definitions. Only the entry points (main.py, the RL entry point) import these."""
