"""The paper's numbers (docs/paper_numbers.json): the one loader every table uses."""
from __future__ import annotations

import json
import os

DEFAULT_PAPER_NUMBERS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs",
    "paper_numbers.json")


def load_paper_numbers(path: str = DEFAULT_PAPER_NUMBERS, section: str | None = None) -> dict:
    """The whole file, or one top-level ``section`` of it (e.g. ``rl_average_return``)."""
    with open(path) as handle:
        numbers = json.load(handle)
    return numbers if section is None else numbers.get(section, {})


def lookup(paper: dict, key: tuple | None):
    """The entry at the path ``key`` (e.g. ("omniglot", "maml_conv", "5way_1shot")), or None."""
    entry = paper
    for part in key or ():
        if not isinstance(entry, dict) or part not in entry:
            return None
        entry = entry[part]
    return entry if key else None
