"""The image-folder path that scales, on real JPEGs (Fashion-MNIST exported in ImageNet's layout): images
screened once per run and cached with sizes and mtimes, shared by the ranks; one pipeline per run whose
epochs follow the EpochOrder (DALI and torch alike, also from a resumed step)."""
import itertools
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from law_hpc.config import load_config
from law_hpc.data import Screening, build_data
from law_hpc.data.folders import scan_image_folder, screen_images
from search_helpers import SMOKE, export_dataset, run_search

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_dataset("imagenet", tmp_path_factory.mktemp("folders") / "imagenet", 40, 10)


def folder_config(root, backend, *extra):
    return load_config(SMOKE, ["data.dataset=imagenet", f"data.root={root}", f"data.backend={backend}",
                               "data.image_size=32", "data.val_size=100", "data.train_size=0", "data.batch_size=50",
                               "data.decoded_cache_mb=0", *extra]).data  # the per-file path; decoded: its own test


def cached(path) -> dict:
    with h5py.File(path, "r") as f:
        names = f["paths"][()].tobytes().decode().split("\n")
        return dict(zip(names, f["intact"][()].tolist()))


def test_screening_is_cached_with_sizes_and_mtimes_and_a_changed_file_is_screened_again(export, tmp_path):
    root = tmp_path / "imagenet"
    shutil.copytree(export, root)
    paths = scan_image_folder(root, "train").paths
    victim, healthy = paths[7], paths[8]
    open(victim, "wb").write(open(victim, "rb").read()[:100])  # truncated
    cache = tmp_path / "screened.h5"
    assert screen_images(paths, Screening(cache)).tolist() == [7]
    entries = cached(cache)
    assert len(entries) == len(paths) and entries[victim] == 0 and entries[healthy] == 1
    # Unchanged files are not read again: a (deliberately wrong) cached verdict on an unchanged file stands...
    with h5py.File(cache, "r+") as f:
        names = f["paths"][()].tobytes().decode().split("\n")
        intact = f["intact"][()]
        intact[names.index(healthy)] = 0
        f["intact"][...] = intact
    assert screen_images(paths, Screening(cache)).tolist() == [7, 8]
    # ...and a file whose modification time or size changed is screened again
    os.utime(healthy, ns=(os.stat(healthy).st_atime_ns, os.stat(healthy).st_mtime_ns + 10 ** 9))
    shutil.copy(paths[9], victim)  # repaired: another size
    assert screen_images(paths, Screening(cache)).tolist() == []
    assert set(cached(cache).values()) == {1}


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_one_iterate_runs_epoch_after_epoch_in_the_epoch_order(export, backend):
    """One pipeline / DataLoader for the run: three epochs from one iterate(), each a new permutation, the same
    positions as a stream started at that step (what a resumed run gets), the same for both backends."""
    cfg = folder_config(export, backend)
    stream = build_data(cfg, purpose="train", seed=0, rank=0, world_size=1, device=CPU).train
    per_epoch = stream.batches_per_epoch
    batches = stream.iterate(5)
    got = [next(batches).index.numpy() for _ in range(3 * per_epoch)]
    epochs = [np.concatenate(got[e * per_epoch:(e + 1) * per_epoch]) for e in range(3)]
    expected = [stream.order.epoch_order(5, e)[:per_epoch * 50] for e in range(3)]
    for epoch, (seen, order) in enumerate(zip(epochs, expected)):
        assert np.array_equal(seen, order), epoch  # no damaged files: readable positions are all positions
    assert not np.array_equal(epochs[0], epochs[1])
    resumed = stream.iterate(5, start_step=per_epoch + 2)  # mid-epoch 1
    assert np.array_equal(next(resumed).index.numpy(), got[per_epoch + 2])


@pytest.mark.slow
def test_two_ranks_share_the_screening_and_skip_the_same_files(export, tmp_path):
    root = tmp_path / "imagenet"
    shutil.copytree(export, root)
    victims = sorted((root / "train").glob("*/*.JPEG"))[5::60]
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:200])
    overrides = ["data.dataset=imagenet", f"data.root={root}", "data.backend=dali", "data.image_size=32",
                 "data.val_size=100", "data.search_train_size=200", "search.episodes=1", "data.on_corrupt_image=skip",
                 "threads_per_rank=1"]
    proc = run_search(tmp_path / "run", ranks=2, overrides=overrides)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    entries = cached(tmp_path / "run" / "screened.h5")  # rank 0 wrote what both ranks screened
    skipped = {name for name, ok in entries.items() if not ok}
    assert skipped and skipped <= {str(v) for v in victims}
    with h5py.File(tmp_path / "run" / "split.h5", "r") as f:
        used = len(f["train_index"]) + len(f["val_index"])
    assert len(entries) == used  # every file the search reads, once


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_data_augment_is_honoured_for_image_folders(export, backend):
    """none: a training image is the image as evaluated (resize + centre crop); flip: that or its mirror;
    random_resized_crop (the ImageNet recipe): other crops."""
    def first_batch(augment):
        data = build_data(folder_config(export, backend, f"data.augment={augment}"), purpose="train", seed=0, rank=0,
                          world_size=1, device=CPU)
        evaluated = torch.cat([images for images, _ in data.training_set().batches()])
        batch = next(data.train.iterate(5))
        return batch.images, evaluated[batch.index]

    images, evaluated = first_batch("none")
    torch.testing.assert_close(images, evaluated, rtol=0, atol=1e-5)
    images, evaluated = first_batch("flip")
    flipped = [not torch.allclose(image, plain, atol=1e-5) for image, plain in zip(images, evaluated)]
    torch.testing.assert_close(torch.stack([p.flip(-1) if f else p for p, f in zip(evaluated, flipped)]), images,
                               rtol=0, atol=1e-5)
    assert 0 < sum(flipped) < len(flipped)
    images, evaluated = first_batch("random_resized_crop")
    cropped = [not (torch.allclose(image, plain, atol=1e-3) or torch.allclose(image, plain.flip(-1), atol=1e-3))
               for image, plain in zip(images, evaluated)]
    assert sum(cropped) > len(cropped) // 2


def test_a_trusted_folder_is_the_validation_split_and_must_hold_every_class(export, tmp_path):
    trusted = tmp_path / "trusted"
    shutil.copytree(export / "val", trusted)
    data = build_data(folder_config(export, "torch", f"data.val_root={trusted}"), purpose="train", seed=0, rank=0,
                      world_size=1, device=CPU)
    trusted_labels = scan_image_folder(tmp_path, "trusted").labels
    assert len(data.val) == len(trusted_labels) and len(data.split.val_index) == 0  # nothing carved out of train/
    assert np.array_equal(torch.cat([labels for _, labels in data.val.batches()]).numpy(), trusted_labels)
    shutil.rmtree(sorted(trusted.iterdir())[3])
    with pytest.raises(ValueError, match="has no images of class"):
        build_data(folder_config(export, "torch", f"data.val_root={trusted}"), purpose="train", seed=0, rank=0,
                   world_size=1, device=CPU)


def test_a_test_folder_can_be_named_and_is_optional(export, tmp_path):
    """data.test_root names the test images; without it data.root/val/ is the test set if it exists, else none."""
    elsewhere = tmp_path / "held_out"
    shutil.copytree(export / "val", elsewhere)
    shutil.rmtree(sorted(elsewhere.iterdir())[0])  # a test set may lack a class
    data = build_data(folder_config(export, "torch", f"data.test_root={elsewhere}"), purpose="train", seed=0, rank=0,
                      world_size=1, device=CPU)
    assert len(data.test) == len(scan_image_folder(tmp_path, "held_out", data.classes).labels) == 90
    no_val = tmp_path / "no_val"
    shutil.copytree(export / "train", no_val / "train")
    assert build_data(folder_config(no_val, "torch"), purpose="train", seed=0, rank=0, world_size=1,
                      device=CPU).test is None
    with pytest.raises(FileNotFoundError, match="missing image folder"):
        build_data(folder_config(no_val, "torch", f"data.test_root={tmp_path / 'absent'}"), purpose="train", seed=0,
                   rank=0, world_size=1, device=CPU)


def test_a_folder_decoded_into_memory_gives_the_batches_of_the_per_file_path(export, backend="torch"):
    """data.decoded_cache_mb: each file decoded once; training batches (images, labels, order) and evaluation batches
    equal the per-file path's, epoch after epoch."""
    per_file = build_data(folder_config(export, backend), purpose="train", seed=0, rank=0, world_size=1, device=CPU)
    decoded = build_data(folder_config(export, backend, "data.decoded_cache_mb=64"), purpose="train", seed=0, rank=0,
                         world_size=1, device=CPU)
    assert type(decoded.train).__name__ == "ArrayTrainStream" and type(per_file.train).__name__ == "FileTrainStream"
    steps = 2 * per_file.train.batches_per_epoch + 1
    for a, b in zip(itertools.islice(per_file.train.iterate(3), steps), itertools.islice(decoded.train.iterate(3), steps)):
        assert torch.equal(a.index.cpu(), b.index.cpu()) and torch.equal(a.labels.cpu(), b.labels.cpu())
        torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-5)
    for name in ("val", "test"):
        for (a, labels_a), (b, labels_b) in zip(getattr(per_file, name).batches(), getattr(decoded, name).batches()):
            assert torch.equal(labels_a.cpu(), labels_b.cpu())
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert decoded.classes == per_file.classes and decoded.image_size == per_file.image_size == 32


def test_a_folder_over_the_budget_augmented_or_for_dali_is_read_file_by_file(export):
    def stream(backend, *extra):
        return type(build_data(folder_config(export, backend, *extra), purpose="train", seed=0, rank=0, world_size=1,
                               device=CPU).train).__name__
    assert stream("torch", "data.decoded_cache_mb=1") == "FileTrainStream"  # 500 images of 32 x 32 x 3: 1.5 MiB
    assert stream("torch", "data.decoded_cache_mb=64", "data.augment=flip") == "FileTrainStream"
    assert stream("dali", "data.decoded_cache_mb=64") == "DaliFileTrainStream"
