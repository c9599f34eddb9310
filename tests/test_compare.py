"""The comparison command reads test results and places them beside the paper's numbers."""
import os

import numpy as np
import pytest

from maml_tf import compare, evaluation
from maml_tf.reporting import sinusoid as sinusoid_compare
from maml_tf.reporting.paper import load_paper_numbers
from maml_tf.reporting.sinusoid_figure import plot_mse_vs_steps

PAPER = load_paper_numbers()


def _recorded(monkeypatch, method):
    """Calls of matplotlib's ``Axes.<method>`` (args), still drawn: what a figure shows."""
    from matplotlib.axes import Axes
    calls, original = [], getattr(Axes, method)

    def record(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Axes, method, record)
    return calls


def _write(logroot, run, k, step_size, values):
    directory = os.path.join(logroot, run, "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001nonorm")
    with np.errstate(invalid="ignore", over="ignore"):  # the CSV's std of diverged columns
        evaluation.write_results(np.asarray(values), directory, k, step_size,
                                 log=lambda *_: None)


def _values(means, spread=0.5, tasks=600):
    """Per-task values whose column j has mean means[j] and standard deviation ``spread``."""
    signs = np.where(np.arange(tasks) % 2 == 0, 1.0, -1.0)[:, None]
    return np.asarray(means, dtype=np.float64)[None, :] + spread * signs


def _row(table, start):
    return [cell.strip() for cell in next(
        line for line in table.splitlines() if line.startswith(start)).strip("|").split("|")]


def test_divergence_bound_follows_the_task_distribution():
    from data_generators.sinusoid import AMP_RANGE
    assert sinusoid_compare.LARGEST_AMPLITUDE == AMP_RANGE[1]
    assert sinusoid_compare.DIVERGED_MSE == (2 * AMP_RANGE[1]) ** 2 == 100


def test_cell_mean_ci_and_divergence():
    values = _values([1.0], spread=0.5)[:, 0]
    cell = sinusoid_compare.cell_from_values(values)
    assert cell.diverged == 0 and cell.mean == pytest.approx(1.0)
    assert cell.ci95 == pytest.approx(1.96 * 0.5 / np.sqrt(600))
    values[:3] = [np.inf, np.nan, 1e6]          # blown up, NaN, and far above 25
    values[3] = sinusoid_compare.DIVERGED_MSE   # exactly at the bound: not diverged
    cell = sinusoid_compare.cell_from_values(values)
    assert cell.diverged == 3 and cell.mean is None and cell.ci95 is None
    assert cell.median == pytest.approx(np.median(np.where(np.isnan(values), np.inf, values)))


def test_table_marks_paper_values_inside_or_outside_our_interval(tmp_path):
    # 5-shot MAML: after 1 step 0.66 +- 0.04 (paper 0.67: inside); after 5 steps
    # 0.30 +- 0.04 (paper 0.38: outside); after 10 steps three tasks diverged.
    means = [2.9, 0.66, 0.5, 0.4, 0.35, 0.30, 0.3, 0.3, 0.3, 0.29, 0.33]
    values = _values(means)
    values[:3, 10] = [np.inf, np.nan, 1e9]
    _write(tmp_path, "sine_lr0.001", 5, 0.001, values)
    _write(tmp_path, "sine_lr0.001", 20, 0.001, _values(means))   # no paper numbers for K=20
    table = sinusoid_compare.sinusoid_table(str(tmp_path), PAPER)

    ours = _row(table, "| MAML, alpha 0.001 (released code) | 5 ")
    assert ours[1:3] == ["5", "0.001"]
    assert ours[3:7] == ["2.90 +- 0.04", "0.66 +- 0.04", "0.30 +- 0.04", "0.29 +- 0.04"]
    median = np.median(np.where(np.isnan(values[:, 10]), np.inf, values[:, 10]))
    assert ours[7] == f"median {median:.2f}, 3 div."
    paper = _row(table, "|   paper (Table 2)")
    assert paper[3:] == ["", "0.67 in", "0.38 OUT", "", "0.35 n/a"]
    twenty = _row(table, "| MAML, alpha 0.001 (released code) | 20 ")
    assert twenty[4] == "0.66 +- 0.04"
    assert table.count("paper (") == 1       # K = 20: no paper row
    # only runs that were tested appear, and no cell of '-' placeholders
    for absent in ("pretrained", "alpha 0.01 (paper", "oracle", "| - |"):
        assert absent not in table
    assert "nan" not in table and "inf" not in table


def test_table_only_shows_selected_runs_and_says_when_nothing_was_tested(tmp_path):
    _write(tmp_path, "sine", 5, 0.01, _values([3.0] * 11))
    _write(tmp_path, "sine_pretrained", 10, 0.02, _values([3.0, 2.3] + [1.7] * 9))
    runs = [r for r in sinusoid_compare.RUNS if r.folder in ("sine_lr0.001", "sine_pretrained")]
    table = sinusoid_compare.sinusoid_table(str(tmp_path), PAPER, runs)
    assert "alpha 0.01" not in table
    assert _row(table, "|   paper (Fig. 3")[6] == "1.7 in"
    empty = sinusoid_compare.sinusoid_table(str(tmp_path / "none"), PAPER)
    assert "No sinusoid test results" in empty


def test_seed_table_gives_mean_and_range_over_seeds(tmp_path):
    medians = []
    for seed, shift in zip((0, 1, 2), (0.0, 0.02, 0.07)):
        values = _values([2.9] + [0.66 + shift] * 10)
        if seed == 2:
            values[:2, 10] = np.inf   # two tasks of one seed diverged after 10 steps
        medians.append(np.median(values[:, 10]))
        _write(tmp_path, f"sine_lr0.001_seed{seed}", 5, 0.001, values)
    table = sinusoid_compare.seed_table(str(tmp_path), PAPER, [0, 1, 2])
    row = _row(table, "| MAML, alpha 0.001")
    assert row[3] == "0,1,2"
    # per-seed means 0.66, 0.68, 0.73 (CIs +- 0.04): the paper's 0.67 is inside two of them
    assert row[5] == "0.69 [0.66, 0.73] (0.67: 2/3 in)"
    # after 10 steps: medians of every seed; only the two seeds without divergence judged
    assert row[8] == (f"median {np.mean(medians):.2f} [{min(medians):.2f}, "
                      f"{max(medians):.2f}], 2 div. (0.35: 0/2 in)")


def test_figure_is_written_only_when_something_was_tested(tmp_path, monkeypatch):
    assert plot_mse_vs_steps(str(tmp_path), PAPER, str(tmp_path / "f")) is None
    values = _values([3.0, 0.4] + [0.2] * 9)
    values[0, 5:] = np.inf
    _write(tmp_path, "sine_lr0.001", 10, 0.001, values)
    curves = _recorded(monkeypatch, "errorbar")
    path = plot_mse_vs_steps(str(tmp_path), PAPER, str(tmp_path / "f"))
    assert path == str(tmp_path / "f" / "sinusoid_mse_vs_steps.png") and os.path.exists(path)
    [(steps, y)] = curves   # one run tested, at K = 10 only: one curve, from the file
    assert list(steps) == list(range(11))
    assert y[:5] == pytest.approx([3.0, 0.4, 0.2, 0.2, 0.2])
    # from step 5 one task diverged: the median over tasks is drawn, not the mean
    assert y[5:] == pytest.approx([np.median(values[:, j]) for j in range(5, 11)])


def test_command_line_prints_only_the_requested_tables(tmp_path, capsys):
    _write(tmp_path, "sine_lr0.001", 5, 0.001, _values([1.0] * 11))
    compare.main([f"--logroot={tmp_path}", "--tables=sinusoid", "--runs=sine_lr0.001",
                  f"--plot_dir={tmp_path / 'figs'}"])
    out = capsys.readouterr().out
    assert "Sinusoid regression" in out and "classification" not in out
    assert f"Figure 3 (MSE against gradient steps): {tmp_path / 'figs'}" in out
    compare.main([f"--logroot={tmp_path}"])
    out = capsys.readouterr().out
    assert "Sinusoid regression" in out and "Few-shot classification" in out
    with pytest.raises(SystemExit):
        compare.main([f"--logroot={tmp_path}", "--runs=sine_typo"])
    assert "sine_typo" in capsys.readouterr().err


def test_classification_table_and_plot(tmp_path, monkeypatch):
    from maml_tf.config import ExperimentConfig

    cfg = ExperimentConfig(datasource="omniglot", meta_batch_size=32, update_batch_size=1,
                           update_lr=0.4, logdir=str(tmp_path / "omniglot5way"))
    values = np.full((600, 11), 0.9)
    values[:, 0] = 0.2
    evaluation.write_results(values, cfg.experiment_dir, 1, 0.4, log=lambda *_: None)
    open(os.path.join(cfg.experiment_dir, "ckpt-59999.index"), "w").close()
    table = compare.classification_table(str(tmp_path), PAPER)
    row = next(l for l in table.splitlines() if l.startswith("| Omniglot 5-way 1-shot |"))
    assert row == "| Omniglot 5-way 1-shot | 60000 | 90.0 +- 0.0 | 90.0 +- 0.0 | 98.7 +- 0.4 |"
    assert "| MiniImagenet 5-way 1-shot | - | - | - | 48.7 +- 1.84 |" in table
    bars = _recorded(monkeypatch, "bar")
    paths = compare.plot_classification(str(tmp_path), PAPER, str(tmp_path / "figs"))
    assert paths == [str(tmp_path / "figs" / "classification_table1.png")]
    (_, paper_heights, _), (_, ours, _) = bars
    assert ours[0] == pytest.approx(90.0) and np.isnan(ours[1:]).all()   # only 5-way 1-shot
    assert paper_heights[0] == 98.7 and paper_heights[-1] == 63.15


def test_rl_results_sharing_a_method_are_told_apart_by_their_folder(tmp_path):
    """The pretrained baseline and its multitask variant both write test_pretrained.pkl:
    the table names their folders; a method with one result keeps its plain name."""
    import pickle

    from maml_tf.reporting.rl import comparison_table, load_results
    paths = []
    for folder, method, mean in (("point_maml", "maml", -20.0),
                                 ("point_pretrained", "pretrained", -40.0),
                                 ("point_pretrained_multitask", "pretrained", -30.0)):
        os.makedirs(tmp_path / folder)
        paths.append(str(tmp_path / folder / f"test_{method}.pkl"))
        with open(paths[-1], "wb") as handle:
            pickle.dump({"env_name": "point", "method": method, "paper_key": "none",
                         "mean_per_step": [mean], "std_per_step": [1.0]}, handle)
    rows = [line.split() for line in comparison_table(load_results(paths), {}).splitlines()]
    assert [row[1:3] + row[-2:] for row in rows[1:]] == [
        ["maml", "0", "-20.00", "1.00"], ["pretrained", "(point_pretrained)", "-40.00", "1.00"],
        ["pretrained", "(point_pretrained_multitask)", "-30.00", "1.00"]]


def test_rl_runs_sharing_a_label_are_one_configuration(tmp_path):
    """LABEL=PATH entries: the runs of one label are summarised as their mean and sd over
    runs per step and drawn as one curve; unlabelled results keep the automatic labels."""
    import pickle

    from maml_tf.reporting.rl import (group_table, groups, load_results,
                                      parse_result_specs, plot_curves)
    specs = []
    for folder, label, curve in (("seed1", "mix", [-40.0, 120.0]),
                                 ("seed2", "mix", [-50.0, 60.0]),
                                 ("seed3", "mix", [-30.0, 150.0]),
                                 ("fifth", "fifth", [-45.0, 220.0]),
                                 ("plain", None, [-38.0, -12.0])):
        os.makedirs(tmp_path / folder)
        path = str(tmp_path / folder / "test_maml.pkl")
        with open(path, "wb") as handle:
            pickle.dump({"env_name": "cheetah_dir", "method": "maml", "paper_key": "none",
                         "mean_per_step": curve, "std_per_step": [1.0, 1.0]}, handle)
        specs.append(f"{label}={path}" if label else path)
    paths, labels = parse_result_specs(",".join(specs) + ",")
    assert labels == ["mix", "mix", "mix", "fifth", None] and paths[-1].endswith("test_maml.pkl")
    results = load_results(paths, labels)
    assert [(label, len(runs)) for _, label, runs in groups(results)] == [
        ("mix", 3), ("fifth", 1), ("maml (plain)", 1)]
    summary = group_table(results).splitlines()
    assert len(summary) == 1    # only the configuration with several runs
    assert "mix: 3 runs" in summary[0] and "-40.00 (10.00) / 110.00 (45.83)" in summary[0]
    plot_curves(results, {}, str(tmp_path / "curves.png"))
    assert os.path.getsize(tmp_path / "curves.png") > 10_000
    with pytest.raises(ValueError, match="2 labels for 1 result files"):
        load_results(paths[:1], ["a", "b"])


def test_rl_forward_backward_results_are_split_by_direction(tmp_path):
    """The direction table averages each step over the backward and over the forward goals
    (the returns' columns, by the sign of the goal), beside the paper's per-direction means;
    tasks that are not directions (the point robot's goals) are left out."""
    import pickle

    from maml_tf.reporting.rl import direction_table, load_results
    returns = np.array([[-10.0, 20.0, 30.0], [100.0, 300.0, 500.0]])   # [steps, goals]
    paths = []
    for folder, result in (
            ("dir", {"env_name": "ant_dir", "method": "maml", "paper_key": "fb",
                     "tasks": np.array([-1.0, 1.0, 1.0]), "returns": returns}),
            ("point", {"env_name": "point", "method": "maml", "paper_key": "p",
                       "tasks": np.array([[0.1, 0.2]] * 3), "returns": returns})):
        os.makedirs(tmp_path / folder)
        paths.append(str(tmp_path / folder / "test_maml.pkl"))
        with open(paths[-1], "wb") as handle:
            pickle.dump({**result, "mean_per_step": [0.0, 0.0], "std_per_step": [0, 0]}, handle)
    paper = {"fb": {"maml": {"by_direction": {"backward": [1.0, 2.0], "forward": [3.0, 4.0],
                                              "num_tasks": [20, 20]}}}}
    lines = direction_table(load_results(paths), paper).splitlines()
    assert lines == [
        "ant_dir        maml, backward goals (1): -10.00 / 100.00; paper (20): 1.00 / 2.00",
        "ant_dir        maml, forward goals (2): 25.00 / 400.00; paper (20): 3.00 / 4.00"]
    assert direction_table(load_results(paths), {}).splitlines()[1] == (
        "ant_dir        maml, forward goals (2): 25.00 / 400.00")
    # the project's paper numbers carry both forward/backward tasks' splits, 40 goals each
    for key in ("ant_forward_backward", "half_cheetah_forward_backward"):
        for method in ("maml", "pretrained", "random", "oracle"):
            entry = PAPER["rl_average_return"][key][method]
            split, (backward, forward) = entry["by_direction"], entry["by_direction"]["num_tasks"]
            assert backward + forward == 40
            overall = entry.get("mean_per_grad_step", [entry.get("mean")])
            weighted = (backward * np.array(split["backward"])
                        + forward * np.array(split["forward"])) / 40
            np.testing.assert_allclose(weighted, overall, atol=0.011)   # the same 40 goals


def _recorded_run(directory, preset_name, accuracy, record_as=None, **changes):
    """A tested classification run in ``directory`` with its config.json, as a training of
    ``preset_name``'s flags (with ``changes``) and ``--experiment=record_as`` writes it."""
    import dataclasses

    from flags import experiments
    from maml_tf import experiment, run_folder
    from maml_tf.config import ExperimentConfig
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    preset = experiments.EXPERIMENTS[preset_name]
    cfg = ExperimentConfig(**{**{k: v for k, v in preset.flags.items() if k in fields},
                              **changes}, logdir=str(directory))
    values = np.full((600, 11), accuracy)
    evaluation.write_results(values, directory, cfg.update_batch_size, cfg.update_lr,
                             log=lambda *_: None, iteration=99)
    open(os.path.join(directory, "ckpt-99.index"), "w").close()
    run_folder.compare_settings(str(directory), experiment.run_settings(cfg),
                                experiment.FIXED_SETTINGS, log=lambda *_: None, compare=False,
                                config=dataclasses.asdict(cfg), experiment=record_as)


def test_classification_rows_come_from_the_run_records(tmp_path):
    """compare finds a run by its config.json: moved and renamed, or trained with bare flags
    elsewhere; a record that contradicts the preset it names is not used (a note says so),
    and one naming another preset with the same flags (the authors' import) is not taken."""
    from flags import experiments
    _recorded_run(tmp_path / "archive" / "renamed", "omniglot_5way_1shot", 0.91,
                  record_as="omniglot_5way_1shot")
    _recorded_run(tmp_path / "bare" / "run", "omniglot_20way_1shot", 0.8)
    _recorded_run(tmp_path / "authors" / "run", "miniimagenet_1shot", 0.5,
                  record_as="miniimagenet_1shot_authors")
    own = experiments.EXPERIMENTS["miniimagenet_5shot"]
    from maml_tf.reporting.classification import classification_runs
    own_dir = next(cfg.experiment_dir for preset, cfg in classification_runs(str(tmp_path))
                   if preset is own)
    _recorded_run(own_dir, "miniimagenet_5shot", 0.7, record_as="miniimagenet_5shot",
                  num_filters=64)                     # a model the preset does not train
    table = compare.classification_table(str(tmp_path), PAPER)
    assert "| Omniglot 5-way 1-shot | 100 | 91.0 +- 0.0 | 91.0 +- 0.0 | 98.7 +- 0.4 |" in table
    assert "| Omniglot 20-way 1-shot | 100 | 80.0 +- 0.0 | 80.0 +- 0.0 |" in table
    assert "| MiniImagenet 5-way 1-shot | - | - | - |" in table
    assert "| MiniImagenet 5-way 5-shot | - | - | - |" in table
    assert ("names miniimagenet_5shot but records num_filters=64 (preset: 32): not used"
            in table)


def _method_row(table, label, k):
    """The cells of the table row of ``label`` (a method, padded or not) and ``k``."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ")]
    return next(row for row in rows if row[:2] == [label, str(k)])


def _sinusoid_dir(logroot, preset_name, folder=None, **changes):
    """The experiment directory of a sinusoid preset's training in ``logroot/folder``."""
    from flags import experiments
    from maml_tf.reporting.runs import preset_config
    preset = experiments.EXPERIMENTS[preset_name]
    return preset_config(preset, os.path.join(logroot, folder or preset.folder, ""),
                         **changes).experiment_dir


def test_sinusoid_rows_come_from_the_run_records(tmp_path):
    """As Table 1's: a moved run is found by its config.json; a record contradicting the
    preset it names is not used even in the preset's own folder (a note says so); a bare-flag
    run is the preset whose training it records (pretrained and MAML alpha 0.01 differ only
    there); a run of another seed is the seed table's, not the main table's."""
    _recorded_run(tmp_path / "archive" / "moved", "sinusoid_lr0.001", 0.5,
                  record_as="sinusoid_lr0.001")
    _recorded_run(_sinusoid_dir(tmp_path, "sinusoid"), "sinusoid", 0.7,
                  record_as="sinusoid", update_lr=0.02)
    _recorded_run(tmp_path / "bare" / "pretrained", "sinusoid_pretrained", 0.9,
                  pretrain_iterations=500)
    _recorded_run(tmp_path / "elsewhere" / "seed4", "sinusoid_lr0.001", 0.3,
                  record_as="sinusoid_lr0.001", seed=4)
    table = sinusoid_compare.sinusoid_table(str(tmp_path), PAPER)
    assert _method_row(table, "MAML, alpha 0.001 (released code)", 10)[3] == "0.50 +- 0.00"
    assert _method_row(table, "pretrained, fine-tuned", 10)[3] == "0.90 +- 0.00"
    assert "alpha 0.01 (paper's text)" not in table and "0.70" not in table
    assert "0.30" not in table                        # seed 4 is not the preset's run
    assert ("names sinusoid but records update_lr=0.02 (preset: 0.01): not used" in table)
    seeds = sinusoid_compare.seed_table(str(tmp_path), PAPER, [4])
    row = _method_row(seeds, "MAML, alpha 0.001 (released code)", 10)
    assert row[3] == "4" and row[4].startswith("0.30 (")
    assert "pretrained" not in seeds


def test_sinusoid_runs_without_a_record_are_read_from_their_folders(tmp_path):
    """Runs from before records: the preset's folder and the <run>_seed<N> folders, as
    before; an experiment directory there whose record names another preset is not read."""
    _write(tmp_path, "sine_lr0.001", 5, 0.001, _values([1.0] * 11))
    _write(tmp_path, "sine_lr0.001_seed2", 5, 0.001, _values([2.0] * 11))
    _recorded_run(os.path.join(tmp_path, "sine_lr0.001", "other"), "sinusoid", 0.7,
                  record_as="sinusoid")
    table = sinusoid_compare.sinusoid_table(str(tmp_path), PAPER)
    assert _method_row(table, "MAML, alpha 0.001 (released code)", 5)[3] == "1.00 +- 0.04"
    with pytest.raises(StopIteration):   # the result of the recorded "other" run
        _method_row(table, "MAML, alpha 0.001 (released code)", 10)
    assert _method_row(table, "MAML, alpha 0.01 (paper's text)", 10)[3] == "0.70 +- 0.00"
    seeds = sinusoid_compare.seed_table(str(tmp_path), PAPER, [0, 2])
    row = _method_row(seeds, "MAML, alpha 0.001 (released code)", 5)
    assert row[3:5] == ["2", "2.00"]
