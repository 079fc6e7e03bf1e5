"""Packaging: the core installs without the HPC stack (no Horovod build), the configs travel with the package,
and the core modules import nothing of the HPC stack."""
import shutil
import subprocess
import sys
import zipfile

from search_helpers import REPO

HPC_STACK = ("horovod", "mpi4py", "nvidia.dali", "torchvision", "pandas", "matplotlib", "tensorboard")


def test_the_core_imports_nothing_of_the_hpc_stack():
    code = ("import sys; import law_hpc.weighter, law_hpc.io.policy_file, law_hpc.models, law_hpc.config; "
            "from law_hpc.models import create_model; create_model('resnet32_cifar', 10); "
            f"print([m for m in {HPC_STACK!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_the_wheel_carries_the_configs_and_needs_only_the_core(tmp_path):
    source = tmp_path / "src"  # a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__",
                                                                             "build", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                           "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("law_hpc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    shipped = {name.rsplit("/", 1)[-1] for name in names if name.startswith("law_hpc/configs/")}
    assert shipped == {p.name for p in (REPO / "configs").glob("*.yaml")} and "smoke.yaml" in shipped
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("=")[0] for r in core) == ["PyYAML", "h5py", "numpy", "torch"], core
    assert any(r.startswith("horovod") and 'extra == "hpc"' in r for r in requires)
    assert any(r.startswith("nvidia-dali-cuda130") and 'extra == "hpc"' in r for r in requires)  # torch 2.14: CUDA 13
    assert any(r.startswith("pandas") and 'extra == "plots"' in r for r in requires)
    assert "Requires-Python: >=3.10" in metadata
