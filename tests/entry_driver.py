"""Many command lines of one entry point (main.py or rl.main) in ONE Python process.

Why: each started Python process costs about 5 s of imports on a slow CI machine, and the
flag tests run dozens of command lines. Each case goes through the entry's own ``main`` under
absl's ``app.run`` with the project's flag parser, as a user's command does; flags are reset
to their defaults before each case, so no case sees another's values.

Example::

    out = run_cases("supervised", {"bad": ["--meta_batch_size=0"]}, root=ROOT)
    assert out["bad"]["returncode"] != 0
"""
import json
import os
import subprocess
import sys

_ENTRIES = {"supervised": ("import main", "main.py"), "rl": ("from rl import main", "rl.main")}

_PRELUDE = """
import contextlib, dataclasses, io, json, sys, traceback
import maml_tf
from absl import app, flags as absl_flags
from flags import common
{import_entry}

def command_line(args):
    absl_flags.FLAGS.unparse_flags()
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err):
        try:
            app.run(main.main, argv=[{argv0!r}, *args],
                    flags_parser=common.parse_with_experiment(({kind!r},)))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    return {{"returncode": code, "stderr": err.getvalue()}}
"""

_RUN_ALL = """
out = {}
for key, (kind, args) in json.load(sys.stdin).items():
    out[key] = command_line(args) if kind == "run" else globals()[kind](args)
print("RESULTS " + json.dumps(out, default=str))
"""


def run_cases(kind: str, cases: dict, root: str, extra_source: str = "",
              timeout: int = 300) -> dict:
    """Outcomes ({"returncode", "stderr"}) of ``cases`` (name -> argument list, or
    name -> (function name in ``extra_source``, argument list)) for the ``kind`` entry."""
    import_entry, argv0 = _ENTRIES[kind]
    script = (_PRELUDE.format(import_entry=import_entry, argv0=argv0, kind=kind)
              + extra_source + _RUN_ALL)
    tagged = {key: value if isinstance(value, tuple) else ("run", value)
              for key, value in cases.items()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(tagged), cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULTS ")]
    return json.loads(line[len("RESULTS "):])
