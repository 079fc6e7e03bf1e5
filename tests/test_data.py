"""The data layer on real images: Fashion-MNIST, and its exports in ImageNet's and CIFAR's formats
written by tools/export_dataset.py; corruption protocols; DALI and torch backends; bad input."""
import importlib.util
import pickle
import shutil

import h5py
import numpy as np
import pytest
import torch

from law_hpc.config import load_config
from law_hpc.data import build_data
from law_hpc.data.arrays import load_cifar, load_fmnist
from law_hpc.data.corruption import corrupt_labels, imbalance_keep
from law_hpc.data.folders import scan_image_folder
from law_hpc.data.splits import CorruptionSpec, make_split
from search_helpers import REPO, SMOKE, export_dataset, run_search

FMNIST = "/usr/share/datasets/fashion-mnist"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {"imagenet": export_dataset("imagenet", root / "imagenet", 40, 10),
            "cifar10": export_dataset("cifar10", root / "cifar10", 100, 20),
            "cifar100": export_dataset("cifar100", root / "cifar100", 10, 5)}


@pytest.fixture(scope="module")
def fmnist():
    return load_fmnist(FMNIST, "train")


def data_config(dataset, root, backend="torch", *extra):
    sizes = {"imagenet": ["data.image_size=32", "data.val_size=100", "data.per_class_images=20", "data.train_size=0",
                          "data.decoded_cache_mb=0"],
             "cifar10": ["data.val_size=200", "data.search_train_size=600", "data.train_size=0"],
             "fmnist": []}[dataset]
    return load_config(SMOKE, [f"data.dataset={dataset}", f"data.root={root}", f"data.backend={backend}",
                               *sizes, *extra]).data


# --- formats ------------------------------------------------------------------------------------------------------

def test_cifar_loader_reads_the_export_exactly(exports, fmnist):
    spec = importlib.util.spec_from_file_location("export_dataset", REPO / "tools" / "export_dataset.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    take_per_class, to_rgb32 = tool.take_per_class, tool.to_rgb32
    train = load_cifar(exports["cifar10"], "train", "cifar10")
    keep = take_per_class(fmnist.labels, 100)
    assert train.images.shape == (1000, 32, 32, 3) and train.num_classes == 10
    assert np.array_equal(train.images, to_rgb32(fmnist.images[keep]))
    assert np.array_equal(train.labels, fmnist.labels[keep])
    c100 = load_cifar(exports["cifar100"], "test", "cifar100")
    assert c100.num_classes == 100 and len(c100.labels) == 50


def test_imagenet_folder_scan_and_jpeg_content(exports, fmnist):
    from PIL import Image
    train = scan_image_folder(exports["imagenet"], "train")
    assert train.classes == [f"n{c:08d}" for c in range(10)]
    assert np.array_equal(np.bincount(train.labels), [40] * 10)
    first = np.asarray(Image.open(train.paths[0]).convert("L"), dtype=np.float64)
    assert np.abs(first - fmnist.images[np.flatnonzero(fmnist.labels == 0)[0], ..., 0]).mean() < 8  # JPEG, lossy
    val = scan_image_folder(exports["imagenet"], "val", train.classes)
    assert len(val.paths) == 100


@pytest.mark.parametrize("dataset", ["imagenet", "cifar10"])
@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_each_loader_yields_normalised_batches_with_clean_eval(exports, dataset, backend):
    cfg = data_config(dataset, exports[dataset], backend)
    data = build_data(cfg, purpose="train", seed=0, rank=0, world_size=1, device=CPU)
    batch = next(data.train.iterate(3))
    assert batch.images.shape == (64, 3, 32, 32) and batch.images.dtype == torch.float32
    assert abs(float(batch.images.mean())) < 1.0 and 0.3 < float(batch.images.std()) < 3
    assert torch.equal(batch.labels, torch.from_numpy(data.split.train_observed)[batch.index])
    val_labels = torch.cat([labels for _, labels in data.val.batches()])
    assert np.array_equal(np.bincount(val_labels.numpy()), [cfg.val_size // 10] * 10)  # balanced, clean
    assert sum(len(labels) for _, labels in data.test.batches()) == len(data.test)


# --- corruption protocols -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, expected", [("uniform_mix", 0.4 * 9 / 10), ("flip", 0.4), ("pair", 0.4)])
def test_noise_protocols_realise_their_rate(fmnist, mode, expected):
    rng = np.random.default_rng(1)
    noisy = corrupt_labels(fmnist.labels, 10, mode, 0.4, rng)
    rate = np.mean(noisy != fmnist.labels)
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / len(noisy))  # 4 sigma
    changed = noisy != fmnist.labels
    if mode == "pair":
        assert np.array_equal(noisy[changed], (fmnist.labels[changed] + 1) % 10)
    if mode == "uniform_mix":  # new labels spread over all classes: none gets more than its share + slack
        assert np.bincount(noisy[changed], minlength=10).min() > 0.8 * changed.sum() / 10


def test_imbalance_protocols_class_counts(fmnist):
    rng = np.random.default_rng(2)
    counts = np.bincount(fmnist.labels[imbalance_keep(fmnist.labels, 10, "discard", rng, classes=(0, 1), keep=0.04)])
    assert counts[0] == counts[1] == 240 and np.all(counts[2:] == 6000)
    counts = np.bincount(fmnist.labels[imbalance_keep(fmnist.labels, 10, "long_tail", rng, factor=100.0)])
    assert counts[0] == 6000 and counts[9] == 60 and np.all(np.diff(counts) < 0)


@pytest.mark.parametrize("noise_mode, imbalance", [("uniform_mix", "none"), ("flip", "none"), ("pair", "none"),
                                                   ("none", "discard"), ("none", "long_tail")])
def test_corruption_never_touches_validation_and_is_reported(fmnist, noise_mode, imbalance):
    split = make_split(fmnist.labels, 10, val_size=1000, train_size=5000, rng=np.random.default_rng(3),
                       corruption=CorruptionSpec(noise_mode=noise_mode, noise_rate=0.4, imbalance=imbalance))
    assert not set(split.val_index) & set(split.train_index)
    assert np.array_equal(np.bincount(fmnist.labels[split.val_index]), [100] * 10)
    realised = np.mean(split.train_true != split.train_observed)
    assert split.report["realised_noise_rate"] == pytest.approx(realised)
    assert (realised > 0.3) == (noise_mode != "none")
    assert np.array_equal(split.report["observed_class_counts"], np.bincount(split.train_observed, minlength=10))


def test_split_is_deterministic_by_seed(fmnist):
    a, b, c = (make_split(fmnist.labels, 10, val_size=500, train_size=2000, rng=np.random.default_rng(s),
                          corruption=CorruptionSpec(noise_mode="uniform_mix", noise_rate=0.4))
               for s in (7, 7, 8))
    assert np.array_equal(a.train_observed, b.train_observed) and np.array_equal(a.train_index, b.train_index)
    assert not np.array_equal(a.train_index, c.train_index)



def test_asking_for_more_training_images_than_remain_names_both_keys(fmnist):
    with pytest.raises(ValueError, match=r"70000 training images asked for \(data.search_train_size .* data.train_size"):
        make_split(fmnist.labels, 10, val_size=500, train_size=70000, rng=np.random.default_rng(0),
                   corruption=CorruptionSpec())

# --- pipelines ------------------------------------------------------------------------------------------------------

def epoch_indices(stream, epoch=0):
    batches = stream.iterate(11, start_step=epoch * stream.batches_per_epoch)
    return np.concatenate([next(batches).index.numpy() for _ in range(stream.batches_per_epoch)])


@pytest.mark.parametrize("dataset", ["imagenet", "fmnist"])
def test_dali_cpu_sharding_over_two_ranks_covers_every_image_once(exports, dataset):
    root = exports.get(dataset, FMNIST)
    # 300 (imagenet) / 1000 (fmnist) training images: batches of 50 divide both shards exactly
    extra = ["data.batch_size=50"] + (["data.train_size=1000"] if dataset == "fmnist" else [])
    cfg = data_config(dataset, root, "dali", *extra)
    shards = [build_data(cfg, purpose="train", seed=0, rank=r, world_size=2, device=CPU).train for r in (0, 1)]
    assert shards[0].batches_per_epoch == shards[1].batches_per_epoch
    total = 300 if dataset == "imagenet" else 1000
    for epoch in (0, 1):
        seen = np.concatenate([epoch_indices(shard, epoch) for shard in shards])
        assert np.array_equal(np.sort(seen), np.arange(total)), epoch
    assert not np.array_equal(epoch_indices(shards[0], 0), epoch_indices(shards[0], 1))


def test_dali_and_torch_give_identical_array_batches(fmnist):
    streams = [build_data(data_config("fmnist", FMNIST, backend), purpose="search", seed=0, rank=0, world_size=1,
                          device=CPU).train for backend in ("torch", "dali")]
    for step in (0, 5, 9):  # also after skipping ahead (resume)
        a, b = (next(stream.iterate(4, start_step=step)) for stream in streams)
        assert torch.equal(a.index, b.index) and torch.equal(a.labels, b.labels)
        assert torch.allclose(a.images, b.images, atol=1e-5)


def test_dali_and_torch_give_the_same_label_multiset_per_epoch_on_jpegs(exports):
    streams = [build_data(data_config("imagenet", exports["imagenet"], backend), purpose="search", seed=0, rank=0,
                          world_size=1, device=CPU).train for backend in ("torch", "dali")]
    labels = []
    for stream in streams:
        batches = stream.iterate(2)
        labels.append(np.sort(np.concatenate([next(batches).labels.numpy() for _ in range(stream.batches_per_epoch)])))
    assert np.array_equal(labels[0], labels[1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_search_runs_on_the_imagenet_export_skipping_a_damaged_jpeg(exports, tmp_path, backend):
    root = tmp_path / "imagenet"
    shutil.copytree(exports["imagenet"], root)
    victims = sorted((root / "train").glob("*/*.JPEG"))[::50]  # one in a few classes: some land in training
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:200])  # truncated
    overrides = ["data.dataset=imagenet", f"data.root={root}", f"data.backend={backend}", "data.image_size=32",
                 "data.val_size=100", "data.search_train_size=200", "search.episodes=1",
                 "data.on_corrupt_image=skip", "data.decoded_cache_mb=0"]
    proc = run_search(tmp_path / "run", overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "episode 1 done" in proc.stdout and "skipped unreadable image" in proc.stderr
    with h5py.File(tmp_path / "run" / "metrics.h5", "r") as f:
        kinds = [kind.decode() for kind in f["events/kind"][()]]
    assert any(kind.startswith("skipped_images:") for kind in kinds), kinds


# --- bad input ------------------------------------------------------------------------------------------------------

def test_dali_gpu_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from law_hpc.data.dali import require_dali
    with pytest.raises(ValueError, match="no CUDA device"):
        require_dali(data_config("fmnist", FMNIST, "dali", "data.dali_device=gpu"))


def test_bad_paths_layouts_and_labels_name_the_file(tmp_path, exports):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        scan_image_folder(tmp_path / "nowhere", "train")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "train" / "a.JPEG").write_bytes(b"x")
    with pytest.raises(ValueError, match="no class sub-directories"):
        scan_image_folder(tmp_path / "flat", "train")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar(tmp_path, "train", "cifar10")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar(tmp_path / "c", "test", "cifar10")
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 12]}
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match="label 12 out of range"):
        load_cifar(tmp_path / "c", "test", "cifar10")


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_a_corrupt_jpeg_fails_naming_it_or_is_skipped_and_counted(exports, tmp_path, backend):
    import shutil
    root = tmp_path / "imagenet"
    shutil.copytree(exports["imagenet"], root)
    cfg = data_config("imagenet", root, backend, "data.val_size=100")
    data = build_data(cfg, purpose="train", seed=0, rank=0, world_size=1, device=CPU)
    victim = data.train.paths[data.train.order.epoch_order(11, 0)[0]]  # in the first batch of epoch 0
    open(victim, "wb").write(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(ValueError, match=victim.split("/")[-1]):  # screened once, when the data is built
        build_data(cfg, purpose="train", seed=0, rank=0, world_size=1, device=CPU)
    skip = build_data(data_config("imagenet", root, backend, "data.val_size=100", "data.on_corrupt_image=skip"),
                      purpose="train", seed=0, rank=0, world_size=1, device=CPU)
    seen = epoch_indices(skip.train)
    assert list(skip.train.corrupt.skipped) == [victim]
    assert data.train.order.epoch_order(11, 0)[0] not in seen
    assert len(seen) >= skip.train.batches_per_epoch * cfg.batch_size - 1  # the epoch goes on
    epoch_indices(skip.train, epoch=1)
    assert skip.train.skipped_images == 1  # met again in the next epoch: counted (and warned) once


@pytest.mark.slow
@pytest.mark.parametrize("config, dataset", [("imagenet_noisy_resnet18.yaml", "imagenet"),
                                             ("cifar10_noisy_resnet18.yaml", "cifar10")])
def test_paper_configs_run_a_smoke_search_on_the_exports(exports, tmp_path, config, dataset):
    """The paper's ImageNet and CIFAR configs, unchanged but for size, on real exported images (DALI)."""
    # ResNet-18's steps dominate the test's time: batches of 8, 40 validation images
    size = (["data.image_size=32", "data.per_class_images=20"] if dataset == "imagenet"
            else ["data.search_train_size=400"])
    overrides = [f"data.root={exports[dataset]}", *size, "data.val_size=40", "data.batch_size=8",
                 "data.eval_batch_size=40", "data.num_workers=1", "search.episodes=1", "optim.epochs=1",
                 "search.stages=2", "search.warmup_stages=1", "search.max_iters_per_epoch=4", "threads_per_rank=1"]
    proc = run_search(tmp_path, config=REPO / "configs" / config, overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "episode 1 done" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("dataset, backend, noise_mode, imbalance", [
    ("fmnist", "dali", "flip", "none"), ("cifar10", "torch", "pair", "none"),
    ("imagenet", "dali", "none", "discard"), ("cifar10", "dali", "none", "long_tail"),
    ("imagenet", "torch", "uniform_mix", "none")])
def test_every_corruption_protocol_runs_a_search_and_logs_its_report(exports, tmp_path, dataset, backend, noise_mode,
                                                                     imbalance):
    root = exports.get(dataset, FMNIST)
    size = {"fmnist": [], "cifar10": ["data.search_train_size=150", "data.val_size=200"],
            "imagenet": ["data.image_size=32", "data.val_size=100", "data.search_train_size=200"]}[dataset]
    overrides = [f"data.dataset={dataset}", f"data.root={root}", f"data.backend={backend}", *size,
                 f"data.noise_mode={noise_mode}", f"data.imbalance={imbalance}", "data.imbalance_factor=10",
                 "search.episodes=1"]
    proc = run_search(tmp_path, overrides=overrides)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with h5py.File(tmp_path / "metrics.h5", "r") as f:
        report = {key: f["data_report"][key][()] for key in f["data_report"]}
    assert (report["realised_noise_rate"] > 0.2) == (noise_mode != "none")
    counts = report["true_class_counts"]
    assert (counts.max() > 3 * counts.min()) == (imbalance != "none")
