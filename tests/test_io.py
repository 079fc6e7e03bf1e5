"""HDF5 I/O on real files: atomic checkpoints, corruption detection, SWMR metrics, the policy file."""
import subprocess
import sys
import textwrap
import warnings

import h5py
import numpy as np
import pytest
import torch

from law_hpc.io.checkpoint import (complete_positions, list_checkpoints, read_checkpoint, save_checkpoint,
                                   verify_checkpoint)
from law_hpc.io.metrics import STAGE_COLUMNS, MetricsLog, open_metrics, package_versions, read_stages, search_layout
from law_hpc.io.policy_file import load_policy, save_policy
from law_hpc.law.settings import PolicySettings
from law_hpc.law.policy import StrategyModel
from law_hpc.weighter import PolicyWeighter


def _save(directory, episode, stage, value=1.0):
    return save_checkpoint(directory, (episode, stage, 10), {"buffer/reward": np.full(4, value)},
                           {"net": {"w": torch.full((3,), value)}}, {"metrics_cursor": 7})


def test_checkpoint_round_trip_and_keeps_last_two(tmp_path):
    for stage in range(4):
        _save(tmp_path, 0, stage, float(stage))
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["ckpt-e00000-s00003-i00000010.h5", "ckpt-e00000-s00002-i00000010.h5"]
    ckpt = read_checkpoint(kept[0])
    assert np.array_equal(ckpt["arrays"]["buffer/reward"], np.full(4, 3.0))
    assert torch.equal(ckpt["torch"]["net"]["w"], torch.full((3,), 3.0))
    assert ckpt["attrs"]["metrics_cursor"] == 7 and ckpt["attrs"]["stage"] == 3 and ckpt["attrs"]["iteration"] == 10
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_corrupt_and_truncated_checkpoints_are_skipped(tmp_path):
    good = _save(tmp_path, 0, 1)
    bad = _save(tmp_path, 0, 2)
    raw = bytearray(bad.read_bytes())
    where = raw.find(np.full(4, 1.0).tobytes())  # the replay-buffer rewards, inside the file
    assert where > 0
    raw[where:where + 8] = np.float64(9.0).tobytes()  # a silent bit flip in the data
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        verify_checkpoint(bad)
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        assert complete_positions(tmp_path) == [(0, 1, 10)]
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning):
        assert complete_positions(tmp_path) == [(0, 1, 10)]
    assert read_checkpoint(good)["attrs"]["complete"] == 1


def test_checkpoint_without_completeness_marker_is_rejected(tmp_path):
    path = _save(tmp_path, 0, 0)
    with h5py.File(path, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(ValueError, match="completeness"):
        verify_checkpoint(path)


def test_write_failure_keeps_previous_checkpoint(tmp_path):
    """A file-size limit makes the write fail like a full disk: clear error, old checkpoint intact."""
    _save(tmp_path, 0, 0)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np, torch
        from pathlib import Path
        from law_hpc.io.checkpoint import save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            save_checkpoint(Path({str(tmp_path)!r}), (0, 1, 10), {{"big": np.zeros(1_000_000)}}, {{}}, {{}})
        except OSError as err:
            print("ERR", err); sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "previous checkpoint is intact" in proc.stdout
    assert complete_positions(tmp_path) == [(0, 0, 10)]
    assert not list(tmp_path.glob(".*tmp*"))


def _row(episode, stage, rank, num_classes=3):
    row = {name: (episode if name == "episode" else stage if name == "stage" else rank if name == "rank" else 0.5)
           for name in STAGE_COLUMNS}
    row.update(weighted=1, strategy_checksum=123, action=np.arange(5.0), class_weight_mean=np.ones(num_classes))
    return row


def test_the_logged_versions_are_those_of_the_installed_stack():
    import horovod
    import torchvision
    versions = package_versions()  # from the distributions' metadata, without importing them
    assert versions["torch"] == torch.__version__ and versions["h5py"] == h5py.__version__
    assert (versions["numpy"], versions["horovod"]) == (np.__version__, horovod.__version__)
    assert versions["torchvision"] == torchvision.__version__.split("+")[0]  # the wheel's metadata has no local tag
    try:
        from nvidia import dali
        assert versions["nvidia.dali"] == dali.__version__
    except ImportError:
        assert versions["nvidia.dali"] == "missing"


def test_metrics_swmr_reader_follows_writer_and_a_rewrite_replaces_the_file_whole(tmp_path):
    path = tmp_path / "metrics.h5"
    log = MetricsLog.create(path, search_layout(3), {"config_yaml": "a: 1", "world_size": 2, "versions": {"torch": "x"}},
                            {"realised_noise_rate": 0.36})
    log.append([_row(0, 0, 0), _row(0, 0, 1)])
    reader = open_metrics(path)  # a live reader while the writer keeps appending
    assert reader["stages/episode"].shape[0] == 2
    log.append([_row(0, 1, 0), _row(0, 1, 1)])
    reader["stages/episode"].refresh()
    assert reader["stages/episode"].shape[0] == 4
    reader.close()
    log.event(0, 1, 1, "non_finite_loss")
    log.close()
    columns = read_stages(path)
    assert list(columns["stage"]) == [0, 0, 1, 1] and columns["action"].shape == (4, 5)
    assert columns["class_weight_mean"].shape == (4, 3)
    held = open_metrics(path)  # a reader holding the file across the rewrite keeps the old rows
    log = MetricsLog.create(path, search_layout(3), {}, {}, rows=[_row(0, 0, 0), _row(0, 0, 1)],
                            events=[(0, 0, 0, "resume")])
    assert log.rows == 2 and held["stages/episode"].shape[0] == 4
    held.close()
    log.close()
    with h5py.File(path, "r") as f:
        assert f["stages/episode"].shape[0] == 2 and f["events/kind"][()].tolist() == [b"resume"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_open_metrics_rejects_foreign_and_truncated_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a law_hpc metrics file"):
        open_metrics(foreign)
    truncated = tmp_path / "t.h5"
    MetricsLog.create(truncated, search_layout(2), {}, {}).close()
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        open_metrics(truncated)


def _settings(**over) -> PolicySettings:
    return PolicySettings(**{"stages": 4, "embed_dim": 3, "hidden": 8, "action_scale": 1.0, "action_bound": "tanh",
                             "action_terms": ("loss", "entropy", "density", "label", "bias"), "weight_norm": "mean",
                             "feature_norm": "rank", "warmup_stages": 1, "num_classes": 3, "epochs": 20,
                             "lr_decay_stages": (10,), **over})


def test_policy_file_round_trip_and_weighter(tmp_path):
    torch.manual_seed(0)
    model = StrategyModel(4, 3, 8, 1.0)
    save_policy(tmp_path / "policy.h5", model, _settings(), np.log([0.5, 0.25, 0.25]))
    loaded = load_policy(tmp_path / "policy.h5")
    assert loaded.settings == _settings() and loaded.outcome == {}
    assert torch.equal(loaded.model.act(2, (1.0, 0.5)), model.act(2, (1.0, 0.5)))
    weighter = PolicyWeighter.from_file(tmp_path / "policy.h5", class_counts=[50, 25, 25])
    logits, labels = torch.randn(16, 3), torch.randint(0, 3, (16,))
    assert torch.equal(weighter.weights(logits, labels, stage=0), torch.ones(16))  # warm-up stage
    weights = weighter.weights(logits, labels, stage=weighter.stage_of_step(3, 4))
    assert weights.shape == (16,) and (weights > 0).all() and (weights < 2).all()
    with pytest.raises(ValueError, match="not a law_hpc policy"):
        load_policy(_foreign(tmp_path))


def test_the_weighter_cuts_stages_as_the_search_and_refuses_what_does_not_fit(tmp_path):
    from law_hpc.law.schedule import StageSchedule

    torch.manual_seed(0)
    save_policy(tmp_path / "policy.h5", StrategyModel(4, 3, 8, 1.0), _settings(smoothing=0.5),
                np.log([0.5, 0.25, 0.25]))
    weighter = PolicyWeighter.from_file(tmp_path / "policy.h5", class_counts=[50, 25, 25])
    assert weighter.smoothing == 0.5 and weighter.weight_norm == "mean"  # the search's, from the file
    for per_epoch, epochs in ((7, 3), (10, 4), (13, 20)):  # stage ends inside epochs, and on epoch ends
        schedule = StageSchedule(stages=4, warmup_stages=1, iterations_per_epoch=per_epoch, epochs=epochs, base_lr=0.1)
        total = per_epoch * epochs
        assert [weighter.stage_of_step(step, total) for step in range(total)] == \
            [schedule.stage_of_step(step) for step in range(total)]
    with pytest.raises(ValueError, match="searched with 3 classes; class_counts has 10"):
        PolicyWeighter.from_file(tmp_path / "policy.h5", class_counts=[10] * 10)
    with pytest.raises(ValueError, match="label 5 is beyond this policy's 3 classes"):
        weighter.weights(torch.randn(2, 6), torch.tensor([0, 5]), stage=2)


def test_law_loss_is_the_weighter_step_by_step(tmp_path):
    import torch.nn.functional as F

    from law_hpc.weighter import LAWLoss
    torch.manual_seed(0)
    save_policy(tmp_path / "policy.h5", StrategyModel(4, 3, 8, 1.0), _settings(weight_norm="sum_w"),
                np.log([0.5, 0.25, 0.25]))
    law_loss = LAWLoss.from_policy(tmp_path / "policy.h5", [50, 25, 25], steps_per_epoch=5, epochs=4)
    weighter = PolicyWeighter.from_file(tmp_path / "policy.h5", class_counts=[50, 25, 25])
    for step in range(20):
        logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
        weights = weighter.weights(logits, labels, weighter.stage_of_step(step, 20))
        expected = (weights * F.cross_entropy(logits, labels, reduction="none")).sum() / weights.sum()
        torch.testing.assert_close(law_loss(logits, labels, step), expected)
        assert law_loss.stage_ends(step) == (step in (4, 9, 14, 19))
    with pytest.raises(ValueError, match="class_counts has 2"):
        LAWLoss.from_policy(tmp_path / "policy.h5", [50, 50], steps_per_epoch=5, epochs=4)


def _foreign(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    return path


def test_policy_file_records_its_validation_outcome_and_a_losing_policy_warns(tmp_path):
    torch.manual_seed(0)
    model = StrategyModel(4, 3, 8, 1.0)
    outcome = {"validation_gap": 0.031, "validation_acc_target": 0.85, "validation_acc_reference": 0.819, "episode": 7}
    save_policy(tmp_path / "won.h5", model, _settings(), np.log([0.5, 0.25, 0.25]), outcome)
    won = load_policy(tmp_path / "won.h5")
    assert won.validation_gap == pytest.approx(0.031) and won.outcome["episode"] == 7
    assert won.settings.lr_decay_stages == (10,) and won.settings.feature_norm == "rank"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a winning policy loads silently
        PolicyWeighter.from_file(tmp_path / "won.h5")
    save_policy(tmp_path / "lost.h5", model, _settings(), np.log([0.5, 0.25, 0.25]),
                {**outcome, "validation_gap": -0.012})
    with pytest.warns(UserWarning, match=r"did not beat uniform training.*-1\.20 points"):
        PolicyWeighter.from_file(tmp_path / "lost.h5")


def test_an_older_policy_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "law_hpc.policy/1"
    with pytest.raises(ValueError, match="older law_hpc policy file.*search again"):
        load_policy(path)


@pytest.mark.parametrize("key, value", [("density", "dot"), ("label_feature", "index"),
                                        ("feature_norm", "class_val_rank")])
def test_a_policy_searched_with_a_removed_setting_is_refused_in_one_line(tmp_path, key, value):
    path = tmp_path / "removed.h5"
    save_policy(path, StrategyModel(4, 3, 8, 1.0), _settings(), np.log([0.5, 0.25, 0.25]))
    with h5py.File(path, "r+") as f:
        f.attrs[key] = value
    with pytest.raises(ValueError, match=rf"searched with strategy\.{key}={value}, which this version no longer has"):
        load_policy(path)
