"""End-to-end behaviour of supervised runs: training, resume, test mode, export, data."""
import csv
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from data_generators.factory import build_task_sources
from data_generators.sinusoid import SinusoidTasks
from maml_tf import experiment
from maml_tf.config import ExperimentConfig, experiment_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sine_cfg(logdir, **overrides):
    values = dict(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01,
                  metatrain_iterations=300, logdir=str(logdir), xla="off", seed=3)
    values.update(overrides)
    return ExperimentConfig(**values)


def quiet(*_):
    pass


@pytest.mark.parametrize("overrides, expected", [
    (dict(datasource="sinusoid", norm="None", update_batch_size=10),
     "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001nonorm"),
    (dict(datasource="sinusoid", norm="None", update_batch_size=10, baseline="oracle",
          update_lr=0.01), "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01oraclenonorm"),
    (dict(datasource="omniglot", meta_batch_size=32, update_batch_size=1, update_lr=0.4),
     "cls_5.mbs_32.ubs_1.numstep1.updatelr0.4batchnorm"),
    (dict(datasource="miniimagenet", meta_batch_size=4, update_batch_size=1, update_lr=0.01,
          num_updates=5, num_filters=32, max_pool=True, stop_grad=True),
     "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolstopgradbatchnorm"),
    (dict(update_batch_size=5, train_update_batch_size=10, update_lr=0.02,
          train_update_lr=0.01, norm="layer_norm"),
     "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01layernorm"),
])
def test_experiment_name_matches_original(overrides, expected):
    assert experiment_name(ExperimentConfig(**overrides)) == expected


def test_sinusoid_test_tasks_reproduce_the_original_stream():
    """The original drew each test task with np.random.seed(1) and meta-batch 1."""
    cfg = ExperimentConfig(datasource="sinusoid", update_batch_size=5, train=False)
    batch = build_task_sources(cfg).test(3)
    np.random.seed(1)
    for t in range(3):  # the original generate_sinusoid_batch, batch_size 1
        amp = np.random.uniform(0.1, 5.0, [1])
        phase = np.random.uniform(0, np.pi, [1])
        x = np.random.uniform(-5.0, 5.0, [10, 1])
        y = amp[0] * np.sin(x - phase[0])
        np.testing.assert_allclose(batch.inputa[t], x[:5], rtol=1e-6)
        np.testing.assert_allclose(batch.inputb[t], x[5:], rtol=1e-6)
        np.testing.assert_allclose(batch.labelb[t], y[5:], rtol=1e-5, atol=1e-6)


def test_sinusoid_oracle_appends_amplitude_and_phase():
    source = SinusoidTasks(4, oracle=True, rng=np.random.RandomState(0))
    batch = source.sample(2)
    assert batch.inputa.shape == (2, 4, 3) and batch.labelb.shape == (2, 4, 1)
    for t in range(2):
        amp, phase = batch.task_info[t]
        np.testing.assert_allclose(batch.inputa[t, :, 1], amp)
        np.testing.assert_allclose(batch.inputb[t, :, 2], phase)
        np.testing.assert_allclose(batch.labela[t, :, 0],
                                   amp * np.sin(batch.inputa[t, :, 0] - phase), rtol=1e-5,
                                   atol=1e-5)


def test_short_sinusoid_run_lowers_post_update_loss(tmp_path):
    cfg = sine_cfg(tmp_path, train=False, num_test_tasks=100)
    from maml_tf.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="no checkpoint to test"):
        experiment.run(cfg, build_task_sources, log=quiet)
    # The same initial weights (same seed), evaluated on the same 100 test tasks.
    from maml_tf import evaluation
    untrained = evaluation.evaluate_tasks(
        experiment.build_learner(cfg, build_task_sources(cfg)), build_task_sources(cfg).test,
        100, 10, classification=False)
    logs = []
    experiment.run(sine_cfg(tmp_path, metatrain_iterations=2500, xla="on"),
                   build_task_sources, log=logs.append)
    assert any(l.startswith("Iteration 2000:") for l in logs), logs
    trained = experiment.run(cfg, build_task_sources, log=quiet)["values"]
    assert trained.shape == (100, 11)
    assert trained[:, 1].mean() < 0.5 * untrained[:, 1].mean()
    assert trained[:, 10].mean() < trained[:, 1].mean()


def test_resume_continues_iterations_and_weights(tmp_path):
    first = experiment.run(sine_cfg(tmp_path, metatrain_iterations=1200),
                           build_task_sources, log=quiet)
    assert first["last_itr"] == 1199
    cfg = sine_cfg(tmp_path, metatrain_iterations=1500)
    sources = build_task_sources(cfg)
    learner = experiment.build_learner(cfg, sources)
    from maml_tf.checkpoint import IterationCheckpointer
    ckpt = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                 optimizer=learner.optimizer)
    assert ckpt.available_iterations() == [1000, 1199]
    initial = {n: v.numpy().copy() for n, v in learner.model.adapted.items()}
    assert experiment.restore(cfg, ckpt, quiet) == 1200
    assert int(learner.optimizer.iterations.numpy()) == 1200
    saved = {n: v.numpy().copy() for n, v in learner.model.adapted.items()}
    # The weights are saved under the model by name, and restoring really loads them.
    reader = tf.train.load_checkpoint(os.path.join(cfg.experiment_dir, "ckpt-1199"))
    for n in saved:
        np.testing.assert_array_equal(reader.get_tensor(f"model/{n}/.ATTRIBUTES/VARIABLE_VALUE"),
                                      saved[n])
        assert not np.array_equal(saved[n], initial[n])

    logs = []
    second = experiment.run(cfg, build_task_sources, log=logs.append)
    assert second["resume_itr"] == 1200 and second["last_itr"] == 1499
    assert any("ckpt-1199" in l for l in logs)
    learner2 = experiment.build_learner(cfg, sources)
    ckpt2 = IterationCheckpointer(cfg.experiment_dir, model=learner2.model,
                                  optimizer=learner2.optimizer)
    assert ckpt2.restore(1199) == 1199
    for n, v in learner2.model.adapted.items():
        np.testing.assert_array_equal(v.numpy(), saved[n])
    assert ckpt2.restore() == 1499
    assert int(learner2.optimizer.iterations.numpy()) == 1500


def test_test_mode_csv_and_pickle(tmp_path):
    experiment.run(sine_cfg(tmp_path, metatrain_iterations=200), build_task_sources, log=quiet)
    result = experiment.run(sine_cfg(tmp_path, train=False, update_batch_size=5,
                                     train_update_batch_size=10, test_batch_size=64),
                            build_task_sources, log=quiet)
    assert os.path.basename(result["csv"]) == "test_ubs5_stepsize0.01.csv"
    with open(result["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0] == [f"update{i}" for i in range(11)]
    assert len(rows) == 4 and all(len(r) == 11 for r in rows)
    with open(result["pkl"], "rb") as f:
        values = pickle.load(f)["mses"]
    assert values.shape == (600, 11)
    np.testing.assert_allclose([float(v) for v in rows[1]], values.mean(0), rtol=1e-5)
    np.testing.assert_allclose([float(v) for v in rows[2]], values.std(0), rtol=1e-5)
    np.testing.assert_allclose([float(v) for v in rows[3]],
                               1.96 * values.std(0) / np.sqrt(600), rtol=1e-5)
    # Chunking is only for speed: one task at a time gives the same numbers.
    again = experiment.run(sine_cfg(tmp_path, train=False, update_batch_size=5,
                                    train_update_batch_size=10, test_batch_size=7,
                                    num_test_tasks=20), build_task_sources, log=quiet)
    np.testing.assert_allclose(again["values"], values[:20], rtol=1e-4, atol=1e-6)


def test_test_mode_chunks_have_one_size_and_keep_the_task_order():
    """Test mode calls the learner with one chunk size only (one trace of its graph): tasks
    are drawn 50 at a time as before, a short last chunk is padded to 50 with copies, every
    task keeps its row and padded copies never reach the result."""
    from data_generators.base import TaskBatch
    from maml_tf.evaluation import evaluate_tasks

    drawn, draws = [], []

    def sample(n):  # task i has inputs filled with i, so rows can be traced back
        ids = np.arange(len(drawn), len(drawn) + n, dtype=np.float32)
        drawn.extend(ids)
        draws.append(n)
        fill = ids[:, None, None] * np.ones((n, 2, 1), np.float32)
        return TaskBatch(fill, fill, fill, fill, None)

    class Recorder:
        sizes = []

        def evaluate(self, batch, num_steps):
            self.sizes.append(len(batch.inputa))
            return {"losses": np.repeat(batch.inputa[:, :1, 0], num_steps + 1, axis=1)}

    for num_tasks, expected_size in ((60, 50), (61, 50), (20, 20), (100, 50)):
        drawn.clear()
        draws.clear()
        Recorder.sizes = []
        values = evaluate_tasks(Recorder(), sample, num_tasks, 2, classification=False,
                                batch_size=50)
        assert set(Recorder.sizes) == {expected_size}
        assert values.shape == (num_tasks, 3)
        np.testing.assert_array_equal(values[:, 0], np.arange(num_tasks))
        assert len(drawn) == num_tasks
        assert Recorder.sizes == [expected_size] * -(-num_tasks // 50)
        # drawn as before padding existed, so classification draws are unchanged
        assert draws == [50] * (num_tasks // 50) + ([num_tasks % 50] if num_tasks % 50 else [])


def test_diverged_tasks_summarize_without_numpy_warnings():
    """A diverged task's huge MSE gives inf in the summary, as the original's CSV would,
    but no RuntimeWarning on the screen (the comparison reports such tasks itself)."""
    import warnings
    from maml_tf.evaluation import summarize

    values = np.array([[1.0, 1.0], [3.0, 3e300]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means, stds, ci95 = summarize(values)
    np.testing.assert_allclose(means, [2.0, 1.5e300])
    assert stds[0] == 1.0 and np.isinf(stds[1]) and np.isinf(ci95[1])


@pytest.mark.parametrize("k, lr, seed", [(10, 0.001, -1), (5, 0.01, 3), (1, 1e-05, 0),
                                         (20, 0.4, -1)])
def test_result_names_parse_back_to_what_built_them(k, lr, seed):
    """The comparison finds result files by parsing the names test mode writes."""
    from maml_tf.evaluation import parse_result_basename, result_basename

    name = result_basename(k, lr, seed)
    for path in (name, f"/x/y/{name}.csv", f"{name}.pkl"):
        assert parse_result_basename(path) == (k, lr, seed)
    for other in ("test_ubs5_stepsize.csv", "itr10000_" + name, name + "_copy.csv",
                  "test_ubsX_stepsize0.1", "test_ubs5_stepsize0.1.txt"):
        assert parse_result_basename(other) is None


def test_saved_model_reloads_in_fresh_process(tmp_path):
    export_dir = str(tmp_path / "export")
    experiment.run(sine_cfg(tmp_path, metatrain_iterations=100, export_dir=export_dir,
                            export_num_updates=3), build_task_sources, log=quiet)
    cfg = sine_cfg(tmp_path, metatrain_iterations=100)
    sources = build_task_sources(cfg)
    learner = experiment.build_learner(cfg, sources)
    from maml_tf.checkpoint import IterationCheckpointer
    IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                          optimizer=learner.optimizer).restore()
    batch = SinusoidTasks(10, rng=np.random.RandomState(7)).sample(1)
    from maml_tf import maml
    spec = experiment.inner_loop_spec(cfg)
    trajectory, _, _ = maml.adapt(learner.model, learner.model.tiled_parameters(1),
                                  learner.model.shared_parameters(), batch.inputa,
                                  batch.labela, spec, 3)
    expected = learner.model.forward(batch.inputb, params=trajectory[-1]).numpy()[0]
    np.save(tmp_path / "inputs.npy", np.stack([batch.inputa[0], batch.labela[0],
                                               batch.inputb[0]]))
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        a, la, b = np.load({str(tmp_path / 'inputs.npy')!r})
        m = tf.saved_model.load({export_dir!r})
        out = m.signatures["adapt_and_predict"](support_inputs=tf.constant(a),
            support_labels=tf.constant(la), query_inputs=tf.constant(b))["predictions"]
        np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
        print(int(m.num_steps), float(m.update_lr))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["3", "0.009999999776482582"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)


def test_steps_are_traced_once(tmp_path):
    cfg = sine_cfg(tmp_path)
    sources = build_task_sources(cfg)
    learner = experiment.build_learner(cfg, sources)
    for _ in range(5):
        batch = sources.train()
        learner.meta_train_step(batch)
        learner.evaluate(batch, 5)
    counts = learner.tracing_counts()
    assert counts["meta_step"] == 1 and counts["evaluate_5"] == 1


def test_summaries_use_the_original_names(tmp_path):
    experiment.run(sine_cfg(tmp_path, metatrain_iterations=201), build_task_sources, log=quiet)
    from tensorflow.core.util import event_pb2
    cfg = sine_cfg(tmp_path)
    tags, steps = set(), set()
    for name in os.listdir(cfg.experiment_dir):
        if name.startswith("events"):
            for record in tf.data.TFRecordDataset(os.path.join(cfg.experiment_dir, name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    tags.add(value.tag)
                    steps.add(event.step)
    assert {"metatrain_Pre-update loss", "metatrain_Post-update loss, step 1",
            "metatrain_Post-update loss, step 5"} <= tags
    assert steps == {0, 100, 200}


def test_the_engine_does_not_import_the_data_layer():
    """maml_tf/ sees batches, not data sets: main.py wires data_generators to the engine
    (maml_tf.sources describes what the engine needs)."""
    import ast
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "maml_tf")
    found = []
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path) as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                           else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path}:{node.lineno}" for module in modules
                          if module.split(".")[0] == "data_generators"]
    assert found == []
