"""MiniImagenet preparation (split zips and full-size images) and task batches.

Synthetic CSVs, zips and images are built in tmp_path; one module-scoped fixture prepares the
real split zips from ``../shared/data`` (relative to the repo root, or $MAML_REAL_DATA).
"""
import csv
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_generators.base import DataError
from data_generators.factory import build_task_sources
from data_generators.image_cache import load_class_images
from data_generators.miniimagenet import MiniImagenetTasks
from data_generators.prepare_miniimagenet import EXPECTED_COUNTS, prepare_miniimagenet

REAL_DATA = Path(os.environ.get("MAML_REAL_DATA",
                                Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REAL_MINI = REAL_DATA / "miniImagenet"
SPLITS = {"train": 6, "val": 5, "test": 5}  # classes per synthetic split
IMAGES = 20
TINY = {split: (classes, IMAGES) for split, classes in SPLITS.items()}
quiet = dict(log=lambda *_: None)


def _jpeg(rng, size=(84, 84), mode="RGB"):
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, "JPEG")
    return buffer.getvalue()


def synthetic_listing():
    """{split: {wnid: [file names]}} with Ravi-style names."""
    listing = {}
    for s, (split, classes) in enumerate(SPLITS.items()):
        listing[split] = {}
        for c in range(classes):
            wnid = f"n{s}{c:07d}"
            listing[split][wnid] = [f"{wnid}{i:08d}.jpg" for i in range(1, IMAGES + 1)]
    return listing


def write_csvs(folder, listing):
    folder.mkdir(parents=True, exist_ok=True)
    for split, classes in listing.items():
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            for wnid, names in classes.items():
                writer.writerows([name, wnid] for name in names)


def write_zips(folder, listing, seed=0, replace=None):
    """Split zips ``<split>/<wnid>/<file>``; ``replace`` maps a member name to other bytes."""
    rng = np.random.default_rng(seed)
    replace = replace or {}
    for split, classes in listing.items():
        with zipfile.ZipFile(folder / f"{split}.zip", "w") as archive:
            for wnid, names in classes.items():
                for name in names:
                    member = f"{split}/{wnid}/{name}"
                    archive.writestr(member, replace.get(member, _jpeg(rng)))


@pytest.fixture
def sources(tmp_path):
    listing = synthetic_listing()
    write_csvs(tmp_path / "src", listing)
    write_zips(tmp_path / "src", listing)
    return tmp_path / "src", listing


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    listing = synthetic_listing()
    write_csvs(root / "src", listing)
    write_zips(root / "src", listing)
    out = root / "miniImagenet"
    prepare_miniimagenet(str(root / "src"), str(out), zip_dir=str(root / "src"),
                         expected=TINY, **quiet)
    return out


# ----------------------------------------------------------------------------- preparation

def test_zip_route_copies_bytes_into_the_original_tree(sources, tmp_path):
    src, listing = sources
    out = tmp_path / "miniImagenet"
    counts = prepare_miniimagenet(str(src), str(out), zip_dir=str(src), expected=TINY, **quiet)
    assert counts == {"train": [6, 20], "val": [5, 20], "test": [5, 20]}
    assert sorted(os.listdir(out)) == [".prepared.json", "test", "train", "val"]
    wnid = next(iter(listing["val"]))
    assert sorted(os.listdir(out / "val" / wnid)) == listing["val"][wnid]
    with zipfile.ZipFile(src / "val.zip") as archive:
        name = listing["val"][wnid][3]
        assert archive.read(f"val/{wnid}/{name}") == (out / "val" / wnid / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    messages = []
    prepare_miniimagenet(str(src), str(out), zip_dir=str(src), expected=TINY,
                         log=messages.append)
    assert "already prepared" in messages[0]


def test_images_dir_route_resizes_with_lanczos_and_saves_default_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    listing = synthetic_listing()
    write_csvs(tmp_path / "csv", listing)
    images = tmp_path / "images"
    images.mkdir()
    for split, classes in listing.items():
        for wnid, names in classes.items():
            for i, name in enumerate(names):
                mode = "L" if i == 0 else "RGB"  # ImageNet has a few greyscale JPEGs
                folder = images / wnid if split == "val" else images  # both layouts
                folder.mkdir(exist_ok=True)
                (folder / name).write_bytes(_jpeg(rng, size=(120, 97), mode=mode))
    out = tmp_path / "out"
    prepare_miniimagenet(str(tmp_path / "csv"), str(out), images_dir=str(images),
                         expected=TINY, **quiet)
    for split, folder in (("train", images), ("val", None)):
        wnid = next(iter(listing[split]))
        for name in listing[split][wnid][:2]:
            source = Image.open((folder or images / wnid) / name).convert("RGB")
            expected = io.BytesIO()
            source.resize((84, 84), resample=Image.LANCZOS).save(expected, "JPEG")
            assert (out / split / wnid / name).read_bytes() == expected.getvalue()
            assert Image.open(out / split / wnid / name).mode == "RGB"


@pytest.mark.parametrize("change, message", [
    ("drop", "val.zip: 1 image.* missing, e.g. n10000001/n1000000100000007.jpg"),
    ("extra", "val.zip: 1 image.* not in the CSV, e.g. n10000001/stray.jpg"),
    ("corrupt", "n20000002/n2000000200000005.jpg: not a decodable image"),
    ("size", "n20000002/n2000000200000005.jpg: image is 90x84"),
])
def test_bad_zip_content_is_named_and_leaves_no_output(tmp_path, change, message):
    listing = synthetic_listing()
    write_csvs(tmp_path / "src", listing)
    zipped = {split: {w: list(n) for w, n in c.items()} for split, c in listing.items()}
    replace = {}
    bad = "test/n20000002/n2000000200000005.jpg"
    if change == "drop":
        zipped["val"]["n10000001"].remove("n1000000100000007.jpg")
    elif change == "extra":
        zipped["val"]["n10000001"].append("stray.jpg")
    elif change == "corrupt":
        replace[bad] = _jpeg(np.random.default_rng(0))[:400]
    else:
        replace[bad] = _jpeg(np.random.default_rng(0), size=(90, 84))
    write_zips(tmp_path / "src", zipped, replace=replace)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message):
        prepare_miniimagenet(str(tmp_path / "src"), str(out), zip_dir=str(tmp_path / "src"),
                             expected=TINY, **quiet)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_csv_problems_are_named(sources, tmp_path):
    src, _ = sources
    with pytest.raises(DataError, match="train.csv: 6 classes .* expected 64 classes of 600"):
        prepare_miniimagenet(str(src), str(tmp_path / "o"), zip_dir=str(src), **quiet)
    assert EXPECTED_COUNTS == {"train": (64, 600), "val": (16, 600), "test": (20, 600)}
    (src / "val.csv").write_text("name,wnid\nx.jpg,n1\n")
    with pytest.raises(DataError, match="val.csv: expected the header"):
        prepare_miniimagenet(str(src), str(tmp_path / "o"), zip_dir=str(src), expected=TINY)
    os.remove(src / "val.csv")
    with pytest.raises(DataError, match="file not found: .*val.csv"):
        prepare_miniimagenet(str(src), str(tmp_path / "o"), zip_dir=str(src), expected=TINY)
    with pytest.raises(DataError, match="exactly one of"):
        prepare_miniimagenet(str(src), str(tmp_path / "o"), expected=TINY)


# ------------------------------------------------------------------------------ task batches

def tasks_for(prepared, num_classes=5, shots=1, **kwargs):
    options = dict(train_pool_size=30, eval_pool_size=4,
                   cache_dir=str(prepared.parent / "cache"))
    options.update(kwargs)
    return MiniImagenetTasks(str(prepared), num_classes, shots, **options)


def identify_rows(prepared, split, inputs):
    """(wnid, file) of every served row, matched against the TF-decoded images exactly."""
    decoded = load_class_images(str(prepared / split), 1, (".jpg",), (84, 84, 3), "jpeg_rgb")
    lookup = {decoded.images[c, i].tobytes(): (decoded.class_names[c], name)
              for c, names in enumerate(decoded.file_names) for i, name in enumerate(names)}
    values = np.rint(inputs * 255).astype(np.uint8)
    assert np.array_equal(inputs, values / np.float32(255))  # exact x / 255
    # rows are HWC-flattened 84x84x3 images, unrotated
    return [[lookup[row.reshape(84, 84, 3).tobytes()] for row in task] for task in values]


@pytest.mark.parametrize("shots", [1, 5])
def test_query_counts_follow_the_original_main(prepared, shots):
    training = tasks_for(prepared, shots=shots, train=True)
    assert (training.dim_input, training.dim_output, training.img_shape) == (21168, 5, (84, 84, 3))
    for batch in (training.train_batch(2), training.eval_batch(2)):  # K + 15 while training
        assert batch.inputa.shape == (2, 5 * shots, 21168)
        assert batch.inputb.shape == (2, 75, 21168) and batch.labelb.shape == (2, 75, 5)
    testing = tasks_for(prepared, shots=shots, train=False, test_set=True)
    batch = testing.eval_batch(1)  # K + K in test mode
    assert batch.inputa.shape == (1, 5 * shots, 21168)
    assert batch.inputb.shape == (1, 5 * shots, 21168) and batch.labelb.shape == (1, 5 * shots, 5)


def test_rows_labels_and_splits(prepared):
    tasks = tasks_for(prepared, shots=2, train=False, test_set=True)
    assert len(tasks.metatrain_folders) == 6 and len(tasks.metaval_folders) == 5
    batch = tasks.eval_batch(3)
    inputs = np.concatenate([batch.inputa, batch.inputb], 1)
    labels = np.concatenate([batch.labela, batch.labelb], 1)
    assert np.array_equal(labels.sum(-1), np.ones((3, 20)))
    for task_rows, task_labels in zip(identify_rows(prepared, "test", inputs), labels.argmax(-1)):
        for k in range(4):
            assert sorted(task_labels[5 * k:5 * k + 5]) == [0, 1, 2, 3, 4]
        by_label = {}
        for (wnid, name), label in zip(task_rows, task_labels):
            by_label.setdefault(label, []).append((wnid, name))
        assert len({entries[0][0] for entries in by_label.values()}) == 5
        for entries in by_label.values():
            assert len({wnid for wnid, _ in entries}) == 1 and len(set(entries)) == 4
    rows = identify_rows(prepared, "train", tasks.train_batch(1).inputa)
    assert {wnid for wnid, _ in rows[0]} <= {os.path.basename(f) for f in tasks.metatrain_folders}


def test_cache_matches_tensorflow_jpeg_decoding(prepared, tmp_path):
    tf = pytest.importorskip("tensorflow")
    decoded = load_class_images(str(prepared / "val"), 1, (".jpg",), (84, 84, 3), "jpeg_rgb",
                                cache_dir=str(tmp_path))
    assert decoded.images.shape == (5, 20, 84, 84, 3) and decoded.images.dtype == np.uint8
    path = prepared / "val" / decoded.class_names[2] / decoded.file_names[2][7]
    expected = tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()
    assert np.array_equal(decoded.images[2, 7], expected)
    again = load_class_images(str(prepared / "val"), 1, (".jpg",), (84, 84, 3), "jpeg_rgb",
                              cache_dir=str(tmp_path))
    assert np.array_equal(again.images, decoded.images) and len(os.listdir(tmp_path)) == 1


def test_counts_are_validated_up_front(prepared, tmp_path):
    with pytest.raises(DataError, match="num_classes=6 but the MiniImagenet meta-validation"):
        tasks_for(prepared, num_classes=6)
    with pytest.raises(DataError, match="update_batch_size=6 needs 21"):
        tasks_for(prepared, shots=6, train=True)
    with pytest.raises(DataError, match="prepare_miniimagenet.*--output_dir=.*nothing"):
        MiniImagenetTasks(str(tmp_path / "nothing"), 5, 1)
    (tmp_path / "partial" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"partial/val; .*--output_dir=\S*partial`"):
        MiniImagenetTasks(str(tmp_path / "partial"), 5, 1)


# ---------------------------------------------------------------------------- real archives

@pytest.fixture(scope="module")
def real_mini(tmp_path_factory):
    needed = [REAL_MINI / f"{s}.{e}" for s in ("train", "val", "test") for e in ("csv", "zip")]
    if not all(path.is_file() for path in needed):
        pytest.skip(f"real MiniImagenet CSVs/zips not found under {REAL_MINI}")
    out = tmp_path_factory.mktemp("real") / "miniImagenet"
    counts = prepare_miniimagenet(str(REAL_MINI), str(out), zip_dir=str(REAL_MINI), **quiet)
    yield out, counts
    shutil.rmtree(out.parent)  # 60,000 files and a 250 MB cache: do not leave them behind


def test_real_split_zips_prepare_to_the_papers_counts(real_mini):
    out, counts = real_mini
    assert counts == {"train": [64, 600], "val": [16, 600], "test": [20, 600]}
    with open(REAL_MINI / "test.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    assert all((out / "test" / label / name).is_file() for name, label in rows[::997])
    assert sum(len(os.listdir(out / "train" / w)) for w in os.listdir(out / "train")) == 38400


def test_real_test_tasks(real_mini):
    out, _ = real_mini
    tasks = MiniImagenetTasks(str(out), 5, 5, train=False, test_set=True,
                              cache_dir=str(out.parent / "cache"))
    assert len(tasks.metatrain_folders) == 64 and len(tasks.metaval_folders) == 20
    batch = tasks.eval_batch(1)
    assert batch.inputa.shape == (1, 25, 21168) and batch.inputb.shape == (1, 25, 21168)
    assert 0.0 <= batch.inputa.min() < 0.2 and 0.8 < batch.inputa.max() <= 1.0


def test_a_few_training_iterations_on_real_data(real_mini, tmp_path):
    from maml_tf import experiment
    from maml_tf.config import ExperimentConfig

    out, _ = real_mini
    cfg = ExperimentConfig(datasource="miniimagenet", miniimagenet_folder=str(out),
                           meta_batch_size=2, update_batch_size=1, update_lr=0.01,
                           num_updates=2, num_filters=32, max_pool=True,
                           metatrain_iterations=3, logdir=str(tmp_path),
                           task_groups=1)  # tracing the default's groups took 18 s more
    result = experiment.run(cfg, build_task_sources, log=lambda *_: None)
    assert result["last_itr"] == 2
    assert os.path.exists(os.path.join(cfg.experiment_dir, "ckpt-2.index"))
