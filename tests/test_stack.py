"""The user's stack works here: Horovod over Gloo and MPI, mpi4py inside MPI jobs, h5py, DALI on CPU."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

HERE = Path(__file__).parent
HOROVODRUN = str(Path(sys.executable).parent / "horovodrun")


def run_horovod(controller: str, tmp_path: Path) -> list[dict]:
    cmd = [HOROVODRUN, "-np", "2", "-H", "localhost:2", f"--{controller}", sys.executable,
           str(HERE / "hvd_allreduce_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_horovodrun_two_ranks_average(controller, tmp_path):
    results = run_horovod(controller, tmp_path)
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["size"] == 2
        # mean of (1, 2) x [1, 10, 100]
        assert result["averaged"] == [1.5, 15.0, 150.0]
        assert result["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert result["mixed"] == ["run-dir-name", None]
        assert result["any_flag"] is True
    assert results[0]["controller"] == controller


@pytest.mark.slow
def test_mpi4py_matches_horovod_in_mpi_job(tmp_path):
    for result in run_horovod("mpi", tmp_path):
        assert (result["mpi_rank"], result["mpi_size"]) == (result["rank"], result["size"])


def test_plain_python_is_a_world_of_one(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "hvd_allreduce_worker.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "rank0.json").read_text())
    assert result["size"] == 1 and result["averaged"] == [1.0, 10.0, 100.0] and result["controller"] == "none"


def test_h5py_round_trip(tmp_path):
    data = np.random.default_rng(0).standard_normal((17, 5))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("a/b", data=data)
        f.attrs["note"] = "law"
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert np.array_equal(f["a/b"][()], data) and f.attrs["note"] == "law"


def test_dali_cpu_pipeline_runs_here():
    from nvidia.dali import fn, pipeline_def, types

    images = np.arange(4 * 8 * 8 * 1, dtype=np.uint8).reshape(4, 8, 8, 1)

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: list(images), batch=True, layout="HWC")
        return fn.crop_mirror_normalize(x, dtype=types.FLOAT, mean=[0.0], std=[255.0], output_layout="CHW")

    p = pipe()
    p.build()
    (out,) = p.run()
    arr = np.stack([np.asarray(out[i]) for i in range(4)])
    assert arr.shape == (4, 1, 8, 8)
    assert np.allclose(arr[:, 0], images[..., 0] / 255.0)
