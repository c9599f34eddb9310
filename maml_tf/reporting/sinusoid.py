"""Sinusoid test results beside the paper's Table 2 and Figure 3, with divergence made explicit.

Used by ``python -m maml_tf.compare`` (and so by ``./run.sh sinusoid_experiment``); the runs
are the registry's sinusoid presets (flags/experiments.py), each found under the log root by
its record (``config.json``) as Table 1's are (:func:`run_results`). Reads the
per-task values that test mode writes next to each CSV (``test_ubs{K}_stepsize{a}.pkl``) and
builds one table: for each run, K and fine-tuning step size that was tested, our MSE after
0/1/5/9/10 steps with its 95% CI, and under it the paper's value where the paper gives one,
marked ``in`` when it lies inside our interval and ``OUT`` when not. The paper prints no
intervals for the sinusoid (Table 2 is bare means; Figure 3 values are read off a plot), so
"inside the interval" can only mean inside ours.

Diverged tasks. Repeated inner steps with a step size that is too large for a task's
curvature blow the loss up geometrically (to inf, then NaN): one such task makes the mean
over 600 tasks meaningless. A task counts as *diverged* at a step when its MSE there is not
finite or exceeds ``DIVERGED_MSE`` = 100 = (2 x largest amplitude)^2. Every sinusoid output
lies in [-5, 5], so a prediction anywhere inside that range is off by at most 10 at every
point of every task: an MSE above 100 needs predictions outside the range any task can take,
which is a blown-up model, not a poor fit. A merely poor fit stays below it: the pretrained
model, whose predictions oscillate on a high-amplitude 5-shot task, reaches 28.6 at most, so
"worse than predicting 0" (an MSE above 25) would be the wrong test. Diverging tasks pass from
a normal MSE to far above 100 within a few steps, so the exact bound barely matters (measured
on the alpha 0.01 model: docs/RESULTS.md). A cell with diverged tasks reports their count and
the median over all tasks (robust to them), never a mean.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import pickle
from typing import Optional

import numpy as np

from flags import experiments
from maml_tf.evaluation import parse_result_basename, read_results
from maml_tf.reporting.runs import SETTINGS, find_preset_run, preset_config, recorded_runs
from maml_tf.run_folder import RECORD_NAME
from maml_tf.run_record import same_value

# The task distribution's largest amplitude (data_generators.sinusoid.AMP_RANGE[1]), written
# here because nothing under maml_tf/ imports the data layer; tests/test_compare.py checks
# that the two agree.
LARGEST_AMPLITUDE = 5.0
DIVERGED_MSE = (2 * LARGEST_AMPLITUDE) ** 2
STEPS = (0, 1, 5, 9, 10)  # columns: the steps for which the paper has numbers
KS = (5, 10, 20)


@dataclasses.dataclass(frozen=True)
class SinusoidRun:
    """A sinusoid preset's log folder: its label, the paper's method, its test steps and the
    preset's name (what its runs' records name).

    Example:
        >>> from maml_tf.reporting.sinusoid import SinusoidRun
        >>> run = SinusoidRun(folder="sine", label="MAML", method="maml",
        ...                   test_steps=(0.01, 0.02, 0.02), name="sinusoid")
        >>> run.test_step(5), run.test_step(7)         # any other K: K = 10's step
        (0.01, 0.02)
    """

    folder: str
    label: str
    method: str  # "maml", "pretrained" or "oracle"
    test_steps: tuple  # (step size at K=5, K=10, K=20): what its NAME_test entry uses
    name: str     # the preset (what its runs' records name)

    def test_step(self, k: int) -> float:
        return self.test_steps[KS.index(k)] if k in KS else self.test_steps[1]


# The main job's runs first, then the other sinusoid presets in the registry's order. The
# pretrained baseline is fine-tuned with the step sizes the paper's Figure 6 legend gives
# (0.01 for K = 5, 0.02 for K = 10 and 20).
MAIN_JOB = ("sinusoid_lr0.001", "sinusoid_pretrained")
_PRESETS = [e for e in experiments.EXPERIMENTS.values() if e.flags.get("datasource") == "sinusoid"]
RUNS = tuple(SinusoidRun(e.folder, e.label, e.method, e.test_steps, e.name) for e in
             sorted(_PRESETS, key=lambda e: (e.name not in MAIN_JOB, MAIN_JOB.index(e.name)
                                             if e.name in MAIN_JOB else 0)))


@dataclasses.dataclass
class Cell:
    """Statistics of one (result, step) over its tasks; ``mean``/``ci95`` None if diverged.

    ``diverged`` is None when only the CSV (means) exists, so divergence cannot be counted.

    Example:
        >>> from maml_tf.reporting.sinusoid import cell_from_values
        >>> cell = cell_from_values([0.5, 1.5, 1.0])          # one MSE per test task
        >>> f"{cell.mean:.2f} +- {cell.ci95:.2f}", cell.comparable    # 95% CI: 1.96 std / sqrt(n)
        ('1.00 +- 0.46', True)
        >>> cell_from_values([0.5, float("nan"), 1e4])        # two tasks diverged
        Cell(mean=None, ci95=None, median=10000.0, diverged=2, tasks=3)
    """

    mean: Optional[float]
    ci95: Optional[float]
    median: Optional[float]
    diverged: Optional[int]
    tasks: Optional[int]

    @property
    def comparable(self) -> bool:
        return self.mean is not None and self.ci95 is not None


def cell_from_values(values: np.ndarray) -> Cell:
    """Mean and 95% CI (1.96 std / sqrt(n), as the original) or, with diverged tasks, their
    count and the median. NaN sorts as +inf for the median: a NaN task is a diverged one."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(values) | (values > DIVERGED_MSE)
        median = float(np.median(np.where(np.isnan(values), np.inf, values)))
        diverged = int(bad.sum())
        if diverged:
            return Cell(None, None, median, diverged, len(values))
        ci95 = 1.96 * float(np.std(values)) / np.sqrt(len(values))
        return Cell(float(np.mean(values)), ci95, median, 0, len(values))


def cell_from_csv(results: dict, step: int) -> Cell:
    """A cell from the CSV alone (older results without the per-task pickle)."""
    mean, ci95 = results["means"][step], results["ci95"][step]
    if not (np.isfinite(mean) and np.isfinite(ci95)) or mean > DIVERGED_MSE:
        return Cell(None, None, None, None, None)
    return Cell(mean, ci95, None, None, None)


@dataclasses.dataclass
class TestResult:
    """One test CSV (and its pickle) of a run: K, step size and a Cell per step.

    Example:
        >>> import os, pickle, tempfile
        >>> from maml_tf.reporting.sinusoid import SinusoidRun, load_result
        >>> run = SinusoidRun("sine", "MAML", "maml", (0.01, 0.01, 0.01), "sinusoid")
        >>> csv_path = os.path.join(tempfile.mkdtemp(), "test_ubs10_stepsize0.01.csv")
        >>> with open(csv_path[:-4] + ".pkl", "wb") as handle:   # per-task MSE, steps 0 and 1
        ...     pickle.dump({"mses": [[2.0, 0.5], [4.0, 1.5]]}, handle)
        >>> result = load_result(run, 10, 0.01, csv_path)
        >>> result.num_steps, result.cells[0].mean, result.cells[1].mean
        (1, 3.0, 1.0)
    """

    run: SinusoidRun
    k: int
    step_size: float
    path: str
    cells: dict  # step -> Cell

    @property
    def num_steps(self) -> int:
        return max(self.cells)


def load_result(run: SinusoidRun, k: int, step_size: float, csv_path: str) -> TestResult:
    pkl = csv_path[:-4] + ".pkl"
    if os.path.exists(pkl):
        with open(pkl, "rb") as f:
            values = np.asarray(pickle.load(f)["mses"])
        cells = {s: cell_from_values(values[:, s]) for s in range(values.shape[1])}
    else:
        results = read_results(csv_path)
        cells = {s: cell_from_csv(results, s) for s in range(len(results["means"]))}
    return TestResult(run, k, step_size, csv_path, cells)


def _result_files(directory: str) -> list[tuple[int, float, str]]:
    """(K, step size, CSV) of the original-protocol test results in one experiment
    directory; results of other test seeds are not read."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "test_ubs*_stepsize*.csv")):
        parsed = parse_result_basename(path)
        if parsed is not None and parsed[2] < 0:
            found.append((parsed[0], parsed[1], path))
    return found


def _load_results(found: list, run: SinusoidRun) -> list[TestResult]:
    """The results of :func:`_result_files`: the documented step size of each K first, other
    step sizes after it."""
    found = sorted(found, key=lambda f: (f[0], f[1] != run.test_step(f[0]), f[1]))
    return [load_result(run, k, step, path) for k, step, path in found]


def find_results(run_dir: str, run: SinusoidRun, skip_recorded: bool = False) \
        -> list[TestResult]:
    """Every original-protocol test result in the experiment directories of the log folder
    ``run_dir``; ``skip_recorded``: not in those holding a run record."""
    found = []
    for directory in glob.glob(os.path.join(glob.escape(run_dir), "*", "")):
        if not (skip_recorded and os.path.exists(os.path.join(directory, RECORD_NAME))):
            found += _result_files(directory)
    return _load_results(found, run)


# What a record must agree on to be a sinusoid preset's run: Table 1's settings and which
# phases trained it (the pretrained baseline and MAML with alpha 0.01 agree on all the others).
RECORD_SETTINGS = SETTINGS + ("training",)


def _training(config: dict) -> str:
    """The phases a configuration trains: pretraining, meta-training, or both."""
    return "+".join(phase for phase, key in (("pretraining", "pretrain_iterations"),
                                             ("meta-training", "metatrain_iterations"))
                    if config.get(key)) or "none"


def sinusoid_records(logroot: str) -> list:
    """:func:`~maml_tf.reporting.runs.recorded_runs` under ``logroot``, each configuration
    with its ``training`` (:func:`_training`)."""
    if not os.path.isdir(logroot):
        return []
    return [(directory, {**record, "config": {**record["config"],
                                              "training": _training(record["config"])}})
            for directory, record in recorded_runs(logroot)]


def run_results(logroot: str, run: SinusoidRun, records: Optional[list] = None,
                seed: Optional[int] = None) -> tuple[list[TestResult], list[str]]:
    """The test results of ``run`` (with ``seed``: of its seed run, by default in the folder
    ``<run>_seed<N>``) and notes for the table.

    The run is the one whose record names the preset, or has no preset name, with the
    preset's settings (:data:`RECORD_SETTINGS`) and that seed (the preset's own, 0, without
    ``seed``), wherever it is under ``logroot``; a record naming the preset that contradicts
    it is not used (:func:`maml_tf.reporting.runs.find_preset_run`). Without one, the
    experiment directories of the log folder that hold no record, as before records.
    ``records``: :func:`sinusoid_records`' answer, when several runs share one search.
    """
    records = sinusoid_records(logroot) if records is None else records
    folder = run.folder if seed is None else f"{run.folder}_seed{seed}"
    changes = {} if seed is None else {"seed": seed}
    cfg = preset_config(experiments.EXPERIMENTS[run.name],
                        os.path.join(logroot, folder, ""), **changes)
    expected = dict(dataclasses.asdict(cfg), training=_training(dataclasses.asdict(cfg)))
    same_seed = [(directory, record) for directory, record in records
                 if same_value(cfg.seed, record["config"].get("seed"))]
    found = find_preset_run(logroot, run.name, expected, cfg.experiment_dir,
                            lambda directory, _: bool(_result_files(directory)), same_seed,
                            RECORD_SETTINGS)
    if found.run_dir is None:
        return [], found.notes
    if found.config is not None:
        return _load_results(_result_files(found.run_dir), run), found.notes
    return find_results(os.path.join(logroot, folder), run, skip_recorded=True), found.notes


def _with_notes(text: str, notes: list) -> str:
    return "\n".join([text] + ([""] + [f"Note: {note}" for note in notes] if notes else []))


def paper_reference(paper: dict, method: str, k: int) -> tuple[str, dict]:
    """(source, {step: value}) of the paper's numbers for a method and K (may be empty)."""
    sine = paper["sinusoid"]
    if k == 5 and method in ("maml", "pretrained"):
        table2 = sine["table2_5shot_mse_by_grad_steps"]
        key = "maml" if method == "maml" else "pretrain_on_all_tasks"
        return "Table 2", dict(zip(table2["steps"], table2[key]))
    if k == 10:
        fig3 = sine["figure3_10shot_mse_approx"]
        values = {"maml": {0: fig3["maml_step0"], 1: fig3["maml_step1"], 9: fig3["maml_step9"]},
                  "pretrained": {9: fig3["pretrained_step9"]},
                  "oracle": {0: fig3["oracle"]}}[method]
        return "Fig. 3, approx.", values
    return "", {}


def inside(cell: Cell, reference: float) -> bool:
    """The paper's value lies within our 95% CI."""
    return abs(cell.mean - reference) <= cell.ci95


def _format_cell(cell: Cell) -> str:
    if cell.comparable:
        # '*': from the CSV alone, so tasks that diverged could not be counted
        return f"{cell.mean:.2f} +- {cell.ci95:.2f}" + ("*" if cell.diverged is None else "")
    if cell.diverged is None:
        return "not finite"
    return f"median {cell.median:.2f}, {cell.diverged} div."


def _mark(cell: Cell, reference: float) -> str:
    if not cell.comparable:
        return f"{reference:g} n/a"
    return f"{reference:g} {'in' if inside(cell, reference) else 'OUT'}"


def render_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table whose columns are padded to line up on a terminal too."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


STEP_HEADER = ["before" if s == 0 else f"{s} step{'s' if s > 1 else ''}" for s in STEPS]
DIVERGED_NOTE = (
    f"\n'div.': tasks whose MSE is not finite or above {DIVERGED_MSE:g}, i.e. with predictions "
    "outside every task's output\nrange [-5, 5] (blown up); there the median over all tasks "
    "is shown instead of a mean.")
LEGEND = (
    "MSE over the test tasks (600 unless stated) +- our 95% CI (1.96 std / sqrt(n)); 'before' "
    "is the support-set\nloss of the unadapted model, as the original's update0. Under our "
    "row, the paper's value: 'in' when it lies\ninside our 95% CI, 'OUT' when not (the paper "
    "gives no intervals for sinusoids; its Figure 3 values are\nread off the plot)."
    + DIVERGED_NOTE)
SEED_LEGEND = (
    "Per cell: the mean over seeds of each seed's MSE over the test tasks, [lowest, highest "
    "seed]; in brackets\nthe paper's value and how many seeds' 95% CIs contain it (of the seeds "
    "without diverged tasks there)."
    + DIVERGED_NOTE)


def sinusoid_rows(logroot: str, paper: dict, runs=RUNS) -> tuple[list[list[str]], list]:
    """Table rows for every sinusoid test result found under ``logroot``, the results and
    the notes on run records that were not used."""
    rows, results, notes = [], [], []
    records = sinusoid_records(logroot)
    for run in runs:
        found, run_notes = run_results(logroot, run, records)
        notes += run_notes
        for result in found:
            results.append(result)
            cells = [result.cells.get(s) for s in STEPS]
            show = [0] if run.method == "oracle" else STEPS
            tasks = {c.tasks for c in result.cells.values() if c.tasks}
            k_cell = str(result.k) + ("" if tasks <= {600} else f" ({min(tasks)} tasks)")
            rows.append([run.label, k_cell, f"{result.step_size:g}"]
                        + [_format_cell(c) if c is not None and s in show else ""
                           for s, c in zip(STEPS, cells)])
            source, reference = paper_reference(paper, run.method, result.k)
            if reference:
                rows.append([f"  paper ({source})", "", ""]
                            + [_mark(c, reference[s]) if s in reference and c is not None
                               else "" for s, c in zip(STEPS, cells)])
    return rows, results, notes


def sinusoid_table(logroot: str, paper: dict, runs=RUNS) -> str:
    """The one sinusoid table (only results that exist), or a line saying there are none."""
    rows, results, notes = sinusoid_rows(logroot, paper, runs)
    title = "### Sinusoid regression (paper Table 2 and Figure 3): ours beside the paper's"
    if not rows:
        return _with_notes(f"{title}\n\nNo sinusoid test results under {logroot}.", notes)
    legend = LEGEND
    if any(c.diverged is None for r in results for c in r.cells.values()):
        legend += ("\n*: per-task values (.pkl) missing: from the CSV's means, so tasks that "
                   "diverged could not be counted.")
    return _with_notes("\n".join([title, "", render_table(
        ["method", "K", "fine-tune step"] + STEP_HEADER, rows), "", legend]), notes)


def _seed_summary(cells: list[Cell], reference: Optional[float]) -> str:
    """'mean [min, max]' of the per-seed statistic, diverged count, how many seeds' CIs hold
    the paper's value. With diverged tasks in any seed, all seeds' medians are summarised."""
    if any(c.diverged is None and not c.comparable for c in cells):
        return "not finite"
    diverged = sum(c.diverged or 0 for c in cells)
    values = [c.median for c in cells] if diverged else [c.mean for c in cells]
    text = (f"{np.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}]"
            if len(values) > 1 else f"{values[0]:.2f}")
    if diverged:
        text = f"median {text}, {diverged} div."
    if reference is not None:
        judged = [c for c in cells if c.comparable]  # seeds without diverged tasks here
        text += (f" ({reference:g}: {sum(inside(c, reference) for c in judged)}/{len(judged)} in)"
                 if judged else f" ({reference:g}: n/a)")
    return text


def seed_table(logroot: str, paper: dict, seeds: list[int], runs=RUNS) -> str:
    """Mean and [min, max] over seeds per cell, from each seed's run: the one whose record
    names the preset with that seed, else the folder ``<run>_seed<s>`` (:func:`run_results`).

    A (run, K, step size) appears when at least one seed has it; the seeds column says which.
    The paper's value follows each cell with how many seeds' 95% CIs contain it.
    """
    rows, notes = [], []
    records = sinusoid_records(logroot)
    for run in runs:
        by_key: dict = {}
        for seed in seeds:
            found, seed_notes = run_results(logroot, run, records, seed)
            notes += seed_notes
            for result in found:
                by_key.setdefault((result.k, result.step_size), []).append((seed, result))
        for (k, step_size), found in by_key.items():
            source, reference = paper_reference(paper, run.method, k)
            show = [0] if run.method == "oracle" else STEPS
            cells = []
            for s in STEPS:
                per_seed = [r.cells[s] for _, r in found if s in r.cells]
                cells.append(_seed_summary(per_seed, reference.get(s))
                             if per_seed and s in show else "")
            rows.append([run.label, str(k), f"{step_size:g}",
                         ",".join(str(seed) for seed, _ in found)] + cells)
    title = (f"### Sinusoid regression over seeds {','.join(map(str, seeds))}: "
             "mean [min, max] of the per-seed means")
    if not rows:
        return _with_notes(f"{title}\n\nNo results in {logroot}/<run>_seed<N> folders.", notes)
    return _with_notes("\n".join([title, "", render_table(
        ["method", "K", "fine-tune step", "seeds"] + STEP_HEADER, rows), "",
        SEED_LEGEND]), notes)
