"""The comparison command reads test CSVs and places them beside the paper's numbers."""
import os

import numpy as np

from maml_tf import compare, evaluation


def _write(logroot, run, k, step_size, values):
    directory = os.path.join(logroot, run, "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm")
    evaluation.write_results(np.asarray(values), directory, k, step_size, log=lambda *_: None)


def test_sinusoid_table_places_ours_beside_paper(tmp_path):
    rng = np.random.default_rng(0)
    values = np.abs(rng.normal(size=(600, 11)))
    values[3, -1] = 1e6  # one diverged task
    _write(tmp_path, "sine", 5, 0.01, values)
    table = compare.sinusoid_tables(str(tmp_path), compare.load_paper_numbers())
    row = next(l for l in table.splitlines() if l.startswith("| MAML (alpha 0.01"))
    means = values.mean(0)
    assert f"{means[1]:.2f} (0.67)" in row and f"{means[5]:.2f} (0.38)" in row
    assert "1 / 600" in row
    missing = next(l for l in table.splitlines() if l.startswith("| pretrained"))
    assert missing.count("| - ") >= 5  # nothing invented for runs that did not happen


def test_plot_is_written(tmp_path):
    _write(tmp_path, "sine", 10, 0.01, np.ones((600, 11)))
    paths = compare.plot_sinusoid_curves(str(tmp_path), str(tmp_path / "figs"))
    assert paths and os.path.getsize(paths[0]) > 1000


def test_classification_table_and_plot(tmp_path):
    from maml_tf.config import ExperimentConfig

    cfg = ExperimentConfig(datasource="omniglot", meta_batch_size=32, update_batch_size=1,
                           update_lr=0.4, logdir=str(tmp_path / "omniglot5way"))
    values = np.full((600, 11), 0.9)
    values[:, 0] = 0.2
    evaluation.write_results(values, cfg.experiment_dir, 1, 0.4, log=lambda *_: None)
    open(os.path.join(cfg.experiment_dir, "ckpt-59999.index"), "w").close()
    paper = compare.load_paper_numbers()
    table = compare.classification_table(str(tmp_path), paper)
    row = next(l for l in table.splitlines() if l.startswith("| Omniglot 5-way 1-shot |"))
    assert row == "| Omniglot 5-way 1-shot | 60000 | 90.0 +- 0.0 | 90.0 +- 0.0 | 98.7 +- 0.4 |"
    assert "| MiniImagenet 5-way 1-shot | - | - | - | 48.7 +- 1.84 |" in table
    paths = compare.plot_classification(str(tmp_path), paper, str(tmp_path / "figs"))
    assert os.path.getsize(paths[0]) > 1000
