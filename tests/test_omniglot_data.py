"""Omniglot preparation, split, task pools and task batches.

Synthetic archives and trees are built in tmp_path; one module-scoped fixture prepares the real
archives from ``../shared/data`` (relative to the repo root, or $MAML_REAL_DATA) when present.
"""
import functools
import io
import os
import pickle
import random
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_generators.base import DataError
from data_generators.factory import build_task_sources
from data_generators.omniglot import OmniglotTasks, split_character_folders
from data_generators.prepare_omniglot import OmniglotCounts, prepare_omniglot
from data_generators.task_pool import _draw_with_library, draw_task_pool

REAL_DATA = Path(os.environ.get("MAML_REAL_DATA",
                                Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REAL_ZIPS = (REAL_DATA / "omniglot" / "images_background.zip",
             REAL_DATA / "omniglot" / "images_evaluation.zip")


# ----------------------------------------------------------------------------- preparation

def _png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_archive(path, top, alphabets, images=4, seed=0, corrupt=None):
    """A zip like the official ones: ``top/<alphabet>/characterNN/<id>_NN.png``, 105x105 '1'."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/", b"")
        for alphabet, characters in alphabets.items():
            for c in range(1, characters + 1):
                for i in range(1, images + 1):
                    name = f"{top}/{alphabet}/character{c:02d}/{c:04d}_{i:02d}.png"
                    bits = rng.random((105, 105)) > 0.3
                    data = _png_bytes(Image.fromarray(bits).convert("1"))
                    archive.writestr(name, b"not a png" if name == corrupt else data)
    return path


@pytest.fixture
def tiny_zips(tmp_path):
    background = make_archive(tmp_path / "bg.zip", "images_background", {"Latin": 2, "Greek": 1})
    evaluation = make_archive(tmp_path / "ev.zip", "images_evaluation", {"Tengwar": 2}, seed=1)
    return str(background), str(evaluation)


TINY = OmniglotCounts(alphabets=3, characters=5, images_per_character=4)


def test_prepare_merges_archives_into_the_original_tree(tiny_zips, tmp_path):
    out = tmp_path / "omniglot_resized"
    counts = prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=lambda *_: None)
    assert counts == TINY
    assert sorted(os.listdir(out)) == [".prepared.json", "Greek", "Latin", "Tengwar"]
    files = sorted(os.listdir(out / "Tengwar" / "character02"))
    assert files == [f"0002_{i:02d}.png" for i in range(1, 5)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_resize_is_nearest_neighbour_on_1_bit_images(tiny_zips, tmp_path):
    out = tmp_path / "nn"
    prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=lambda *_: None)
    with zipfile.ZipFile(tiny_zips[0]) as archive:
        source = Image.open(io.BytesIO(archive.read("images_background/Latin/character01/"
                                                    "0001_03.png")))
        source.load()
    prepared = Image.open(out / "Latin" / "character01" / "0001_03.png")
    assert prepared.size == (28, 28) and prepared.mode == "1"
    nearest = np.asarray(source.resize((28, 28), resample=Image.NEAREST))
    assert np.array_equal(np.asarray(prepared), nearest)
    grey_lanczos = np.asarray(source.convert("L").resize((28, 28), resample=Image.LANCZOS))
    assert len(np.unique(grey_lanczos)) > 2  # a real Lanczos would give grey levels


def test_true_lanczos_option_gives_grey_levels(tiny_zips, tmp_path):
    out = tmp_path / "lanczos"
    prepare_omniglot(*tiny_zips, str(out), true_lanczos=True, expected=TINY, log=lambda *_: None)
    pixels = np.asarray(Image.open(out / "Greek" / "character01" / "0001_01.png"))
    assert pixels.shape == (28, 28) and len(np.unique(pixels)) > 2


def test_rerun_skips_finished_output_and_detects_damage(tiny_zips, tmp_path):
    out = tmp_path / "out"
    prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=lambda *_: None)
    messages = []
    prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=messages.append)
    assert "already prepared" in messages[0]
    os.remove(out / "Latin" / "character01" / "0001_01.png")
    with pytest.raises(DataError, match="different numbers of images.*--overwrite"):
        prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=lambda *_: None)
    prepare_omniglot(*tiny_zips, str(out), expected=TINY, overwrite=True, log=lambda *_: None)
    assert (out / "Latin" / "character01" / "0001_01.png").is_file()


def test_existing_unmarked_output_is_never_merged(tiny_zips, tmp_path):
    out = tmp_path / "mine"
    (out / "Something").mkdir(parents=True)
    with pytest.raises(DataError, match="overwrite"):
        prepare_omniglot(*tiny_zips, str(out), expected=TINY, log=lambda *_: None)
    assert os.listdir(out) == ["Something"]


def test_corrupt_image_names_the_member_and_leaves_no_output(tmp_path):
    background = make_archive(tmp_path / "bg.zip", "images_background", {"Latin": 2, "Greek": 1})
    bad = "images_evaluation/Tengwar/character02/0002_03.png"
    evaluation = make_archive(tmp_path / "ev.zip", "images_evaluation", {"Tengwar": 2},
                              corrupt=bad)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="character02/0002_03.png"):
        prepare_omniglot(str(background), str(evaluation), str(out), expected=TINY,
                         log=lambda *_: None)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bg.zip", "ev.zip"]


def test_missing_and_truncated_zips_are_named(tiny_zips, tmp_path):
    with pytest.raises(DataError, match="nowhere.zip"):
        prepare_omniglot(tiny_zips[0], str(tmp_path / "nowhere.zip"), str(tmp_path / "o"))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(Path(tiny_zips[1]).read_bytes()[:3000])
    with pytest.raises(DataError, match="truncated.zip"):
        prepare_omniglot(tiny_zips[0], str(truncated), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["omniglot", "miniimagenet"])
def test_command_line_reports_a_data_error_in_one_line(command, tmp_path, capsys):
    """Both preparation commands: exit status 1 and one ``error:`` line naming the missing
    input, no traceback and no output folder; the shared --overwrite flag is accepted."""
    import importlib
    main = importlib.import_module(f"data_generators.prepare_{command}").main
    out = tmp_path / "out"
    args = {"omniglot": [f"--background_zip={tmp_path / 'nowhere.zip'}",
                         f"--evaluation_zip={tmp_path / 'ev.zip'}"],
            "miniimagenet": [f"--csv_dir={tmp_path / 'nowhere'}",
                             f"--zip_dir={tmp_path}"]}[command]
    assert main(args + [f"--output_dir={out}", "--overwrite"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: --{args[0][2:].split('=')[0]}: "
        f"{'file' if command == 'omniglot' else 'folder'} not found: {args[0].split('=')[1]}"]
    assert not out.exists()


def test_wrong_counts_are_reported(tiny_zips, tmp_path):
    with pytest.raises(DataError, match="expected 50, 1623, 20"):
        prepare_omniglot(*tiny_zips, str(tmp_path / "o"), log=lambda *_: None)


# ------------------------------------------------------------------------- split and pools

def test_split_is_sorted_then_shuffled_with_seed_1():
    folders = [f"alphabet{a:02d}/character{c:02d}" for a in range(50) for c in range(33)][:1623]
    scrambled = list(folders)
    random.Random(99).shuffle(scrambled)
    train, val, test = split_character_folders(scrambled)
    assert (len(train), len(val), len(test)) == (1100, 100, 423)
    state = random.getstate()
    try:  # the original's global-module calls, on a sorted listing
        reference = sorted(folders)
        random.seed(1)
        random.shuffle(reference)
    finally:
        random.setstate(state)
    assert train + val + test == reference


@pytest.mark.parametrize("shape", [(1100, 20, 5, 2), (1100, 20, 20, 2), (1100, 20, 5, 10),
                                   (64, 600, 5, 16), (20, 600, 5, 20), (7, 5, 3, 4)])
def test_task_pool_reproduces_the_python_random_stream(shape):
    fast = draw_task_pool(*shape, num_tasks=500, seed=5)
    slow = _draw_with_library(random.Random(5), *shape, 500)
    assert np.array_equal(fast.classes, slow.classes)
    assert np.array_equal(fast.samples, slow.samples)
    assert fast.classes.shape == (500, shape[2]) and fast.samples.shape == (500, *shape[2:])


# ------------------------------------------------------------------------------ task batches

@pytest.fixture
def synthetic_tree(tmp_path):
    """A prepared-looking tree: 3 alphabets x 10 characters x 20 random grey 28x28 PNGs."""
    rng = np.random.default_rng(3)
    root = tmp_path / "omniglot_resized"
    for a in range(3):
        for c in range(10):
            folder = root / f"alpha{a}" / f"character{c:02d}"
            folder.mkdir(parents=True)
            for i in range(20):
                pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{a}{c:02d}_{i:02d}.png")
    return root


def tiny_tasks(root, num_classes=5, shots=1, **kwargs):
    options = dict(num_train_classes=20, num_val_classes=5, train_pool_size=40,
                   eval_pool_size=6, cache_dir=str(root.parent / "cache"))
    options.update(kwargs)
    return OmniglotTasks(str(root), num_classes, shots, **options)


@functools.lru_cache(maxsize=4)
def _pixel_lookup(root):
    """{bytes of an image rotated r times: (folder, file, r)} for a synthetic tree."""
    lookup = {}
    for folder in sorted(root.glob("*/*")):
        for path in sorted(folder.iterdir()):
            pixels = np.asarray(Image.open(path))
            for r in range(4):
                lookup[np.rot90(pixels, r).tobytes()] = (str(folder), path.name, r)
    return lookup


def identify_rows(tasks, root, inputs):
    """(folder, file, rotation) of every served row, by matching pixels exactly."""
    lookup = _pixel_lookup(root)
    values = np.rint((1.0 - inputs) * 255).astype(np.uint8)
    assert np.array_equal(inputs, np.float32(1) - values / np.float32(255))  # exact encoding
    return [[lookup[row.reshape(28, 28).tobytes()] for row in task] for task in values]


def test_batch_shapes_labels_rotations_and_layout(synthetic_tree):
    tasks = tiny_tasks(synthetic_tree, num_classes=5, shots=2)
    assert (tasks.dim_input, tasks.dim_output, tasks.img_shape) == (784, 5, (28, 28, 1))
    batch = tasks.train_batch(3)
    assert batch.inputa.shape == (3, 10, 784) and batch.inputb.shape == (3, 10, 784)
    assert batch.labela.shape == (3, 10, 5) and batch.labelb.shape == (3, 10, 5)
    assert batch.inputa.dtype == np.float32 and batch.labela.dtype == np.float32
    inputs = np.concatenate([batch.inputa, batch.inputb], axis=1)
    labels = np.concatenate([batch.labela, batch.labelb], axis=1)
    assert np.array_equal(labels.sum(-1), np.ones((3, 20)))
    rows = identify_rows(tasks, synthetic_tree, inputs)
    for task_rows, task_labels in zip(rows, labels.argmax(-1)):
        # sample-major: each group of N rows shows every label once
        for k in range(4):
            assert sorted(task_labels[5 * k:5 * k + 5]) == [0, 1, 2, 3, 4]
        by_label = {}
        for (folder, name, rotation), label in zip(task_rows, task_labels):
            by_label.setdefault(label, []).append((folder, name, rotation))
        folders = {entries[0][0] for entries in by_label.values()}
        assert len(folders) == 5 and folders <= set(tasks.metatrain_folders)
        for entries in by_label.values():
            assert len({e[0] for e in entries}) == 1  # one class per label, support and query
            assert len({e[2] for e in entries}) == 1  # one rotation per class
            assert len({e[1] for e in entries}) == 4  # 2 support + 2 query distinct images


def test_pool_matches_the_original_sampling_code(synthetic_tree):
    tasks = tiny_tasks(synthetic_tree, num_classes=5, shots=1, train_pool_size=3)
    rng = random.Random(5)  # main.py: random.seed(5); then make_data_tensor's loop
    reference = []
    for _ in range(3):
        folders = rng.sample(tasks.metatrain_folders, 5)
        rng.shuffle(folders)
        reference.append([(f, rng.sample(sorted(os.listdir(f)), 2)) for f in folders])
    for cycle in range(2):  # the pool is cycled through in order
        batch = tasks.train_batch(3)
        rows = identify_rows(tasks, synthetic_tree, np.concatenate([batch.inputa, batch.inputb], 1))
        labels = np.concatenate([batch.labela, batch.labelb], 1).argmax(-1)
        for t in range(3):
            for row, ((folder, name, _), label) in enumerate(zip(rows[t], labels[t])):
                want_folder, want_files = reference[t][label]
                assert folder == want_folder and name == want_files[row // 5]


def test_rotations_are_uniform_and_redrawn_on_every_pass(synthetic_tree):
    tasks = tiny_tasks(synthetic_tree, train_pool_size=1)
    seen = []
    for _ in range(40):
        batch = tasks.train_batch(1)
        rows = identify_rows(tasks, synthetic_tree, batch.inputa)
        seen.append(tuple(r[2] for r in sorted(rows[0])))
    counts = np.bincount(np.ravel(seen), minlength=4)
    assert len(set(seen)) > 20 and counts.min() > 20  # 200 draws over 4 values


def test_eval_pool_cycles_resets_and_test_set_switches_split(synthetic_tree):
    tasks = tiny_tasks(synthetic_tree, eval_pool_size=4)
    assert len(tasks.metaval_folders) == 5
    first = identify_rows(tasks, synthetic_tree, tasks.eval_batch(3).inputa)
    tasks.eval_batch(3)  # tasks 3, 0, 1
    tasks.reset_eval()
    again = identify_rows(tasks, synthetic_tree, tasks.eval_batch(3).inputa)
    strip = lambda rows: [sorted(r[:2] for r in task) for task in rows]  # noqa: E731
    assert strip(first) == strip(again)
    folders = {r[0] for task in first for r in task}
    assert folders <= set(tasks.metaval_folders)
    test_tasks = tiny_tasks(synthetic_tree, test_set=True)
    assert len(test_tasks.metaval_folders) == 5
    assert not set(test_tasks.metaval_folders) & set(tasks.metaval_folders)
    assert not set(test_tasks.metaval_folders) & set(tasks.metatrain_folders)


def test_skip_train_tasks_resumes_the_pool_cycle(synthetic_tree):
    served = tiny_tasks(synthetic_tree, train_pool_size=5)
    served.train_batch(4)
    expected = identify_rows(served, synthetic_tree, served.train_batch(2).inputb)
    resumed = tiny_tasks(synthetic_tree, train_pool_size=5)
    resumed.skip_train_tasks(4 + 5 * 7)  # whole cycles wrap around
    got = identify_rows(resumed, synthetic_tree, resumed.train_batch(2).inputb)
    strip = lambda rows: [sorted(r[:2] for r in task) for task in rows]  # noqa: E731
    assert strip(got) == strip(expected)


def test_batches_are_deterministic_per_seed(synthetic_tree):
    state = random.getstate()
    a = tiny_tasks(synthetic_tree, rng_seed=4).train_batch(4)
    assert random.getstate() == state  # private generators only
    b = tiny_tasks(synthetic_tree, rng_seed=4).train_batch(4)
    c = tiny_tasks(synthetic_tree, rng_seed=5).train_batch(4)
    assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))
    assert not np.array_equal(a.inputb, c.inputb)


def test_counts_are_validated_up_front(synthetic_tree, tmp_path):
    with pytest.raises(DataError, match="num_classes=6 .* only 5"):
        tiny_tasks(synthetic_tree, num_classes=6)
    with pytest.raises(DataError, match="update_batch_size=11 needs 22"):
        tiny_tasks(synthetic_tree, shots=11)
    with pytest.raises(DataError, match="prepare_omniglot.*--output_dir=.*missing"):
        OmniglotTasks(str(tmp_path / "missing"), 5, 1)


def test_cache_is_reused_and_refreshed_when_files_change(synthetic_tree):
    tasks = tiny_tasks(synthetic_tree, train_pool_size=1)
    tasks.train_batch(1)
    cache_files = list((synthetic_tree.parent / "cache").iterdir())
    assert len(cache_files) == 1 and cache_files[0].suffix == ".npy"
    for path in synthetic_tree.glob("*/*/*.png"):  # blank every image
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
        os.utime(path, ns=(1, 1))
    batch = tiny_tasks(synthetic_tree, train_pool_size=1).train_batch(1)
    assert np.all(batch.inputa == 1.0)  # inverted zeros: the stale cache was not used
    assert len(list((synthetic_tree.parent / "cache").iterdir())) == 1  # stale one removed


# ---------------------------------------------------------------------------- real archives

@pytest.fixture(scope="module")
def real_omniglot(tmp_path_factory):
    if not all(path.is_file() for path in REAL_ZIPS):
        pytest.skip(f"real Omniglot archives not found under {REAL_DATA / 'omniglot'}")
    out = tmp_path_factory.mktemp("real") / "omniglot_resized"
    counts = prepare_omniglot(*map(str, REAL_ZIPS), str(out), log=lambda *_: None)
    yield out, counts
    shutil.rmtree(out.parent)  # 32,460 files: do not leave them to later sessions' cleanup


def test_real_archives_prepare_to_the_papers_counts(real_omniglot):
    out, counts = real_omniglot
    assert counts == OmniglotCounts(50, 1623, 20)
    alphabets = [p for p in out.iterdir() if p.is_dir()]
    characters = [c for a in alphabets for c in a.iterdir()]
    assert len(alphabets) == 50 and len(characters) == 1623
    assert all(len(os.listdir(c)) == 20 for c in characters)
    pixels = np.asarray(Image.open(characters[0] / sorted(os.listdir(characters[0]))[0]))
    assert pixels.shape == (28, 28) and set(np.unique(pixels)) <= {False, True}


def test_real_split_sizes_and_batches(real_omniglot):
    out, _ = real_omniglot
    tasks = OmniglotTasks(str(out), 20, 1, test_set=True, cache_dir=str(out.parent / "cache"))
    assert len(tasks.metatrain_folders) == 1100 and len(tasks.metaval_folders) == 423
    val = OmniglotTasks(str(out), 5, 1, cache_dir=str(out.parent / "cache"))
    assert len(val.metaval_folders) == 100
    assert not set(val.metaval_folders) & set(tasks.metaval_folders)
    batch = tasks.eval_batch(2)
    assert batch.inputa.shape == (2, 20, 784) and batch.labelb.shape == (2, 20, 20)
    assert set(np.unique(batch.inputa)) <= {0.0, 1.0}
    assert val.train_batch(32).inputb.shape == (32, 5, 784)


def test_short_real_omniglot_run_beats_chance(real_omniglot, tmp_path):
    """5-way 1-shot on the real data: a few hundred meta-iterations already beat chance (20%)."""
    from maml_tf import experiment
    from maml_tf.config import ExperimentConfig

    out, _ = real_omniglot
    # One task group: the same meta-gradient as the default's groups (tests/test_task_groups.py)
    # in a graph a quarter the size: about 30 s less of the 100 this test took.
    common = dict(datasource="omniglot", omniglot_folder=str(out), meta_batch_size=16,
                  update_batch_size=1, update_lr=0.4, num_updates=1, logdir=str(tmp_path),
                  seed=1, task_groups=1)
    logs = []
    experiment.run(ExperimentConfig(**common, metatrain_iterations=300),
                   build_task_sources, log=logs.append)
    assert any(line.startswith("Iteration 200:") for line in logs), logs
    result = experiment.run(ExperimentConfig(**common, train=False, test_set=True,
                                             num_test_tasks=100),
                            build_task_sources, log=lambda *_: None)
    accuracies = result["values"]
    assert accuracies.shape == (100, 11)
    # twice chance (20%) after 300 iterations; about 0.5 measured, and the last digits move
    # with the convolution path's rounding, so no tighter bound
    assert accuracies[:, 1].mean() > 0.4 and accuracies[:, 10].mean() > 0.4
    assert accuracies[:, 1].mean() > accuracies[:, 0].mean() + 0.2  # adaptation helps


def test_real_omniglot_run_with_onednn_off_and_on(real_omniglot, tmp_path):
    """A short real-data run through main.py in fresh processes: trained with oneDNN forced
    off (per-task convolutions, announced), then the same checkpoint tested with oneDNN off
    and on (grouped convolutions): the same per-task accuracies."""
    from tests.test_portability import FALLBACK_NOTE, _run

    out, _ = real_omniglot
    flags = [sys.executable, "main.py", "--datasource=omniglot", f"--omniglot_folder={out}",
             "--meta_batch_size=4", "--update_batch_size=1", "--update_lr=0.4",
             "--num_updates=1", "--metatrain_iterations=20", "--seed=1", f"--logdir={tmp_path}",
             "--task_groups=1"]  # not what this checks; grouped tracing took 2-3x longer
    run = _run(flags, "0")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.count(FALLBACK_NOTE) == 1
    accuracies = {}
    for onednn in ("0", "1"):
        # 10 tasks per call: the per-task-convolution graph of 50 tasks x 10 steps alone
        # took minutes to build
        run = _run(flags + ["--train=False", "--test_set=True", "--num_test_tasks=20",
                            "--test_batch_size=10"], onednn)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
        assert (FALLBACK_NOTE in run.stderr) == (onednn == "0")
        (pkl,) = list(tmp_path.glob("*/test_ubs1_stepsize0.4*.pkl"))
        with open(pkl, "rb") as f:
            accuracies[onednn] = pickle.load(f)["mses"]
        pkl.unlink()
    assert accuracies["0"].shape == (20, 11)
    # Same weights, same tasks; only the convolution kernels differ, so at most a rare
    # near-tie of two logits may flip one query image.
    assert np.mean(accuracies["0"] == accuracies["1"]) > 0.99
    assert abs(accuracies["0"].mean() - accuracies["1"].mean()) < 0.005
