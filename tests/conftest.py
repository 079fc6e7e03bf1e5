"""The suite's two tiers. A test that launches processes (horovodrun, mpirun, Slurm, `python -m law_hpc.*`, the
tools/ and examples/ scripts, make), itself or through a fixture it is the first to use, is marked `slow`;
`make test-fast` runs the others. A test not marked slow that launches one fails with a note saying so, so the
marker stays true as tests are added."""
import subprocess

import pytest

LAUNCHERS = {"horovodrun", "mpirun", "mpiexec", "srun", "sbatch", "salloc", "make", "bash"}
"""Programs whose start makes a test slow (bash: the Slurm helper and setup scripts)."""
_running: list = [None]  # the test being set up, run or torn down (its fixtures' processes count as its own)


def launches(args) -> bool:
    """Whether a subprocess command is one the slow marker is for."""
    words = [str(word) for word in ([args] if isinstance(args, (str, bytes)) else args)]
    if not words:
        return False
    text = " ".join(words)
    return (words[0].rsplit("/", 1)[-1] in LAUNCHERS or "-m law_hpc." in text or "/tools/" in text
            or "/examples/" in text or ("-c" in words and ("law_hpc.search" in text or "law_hpc.train" in text)))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: launches processes (horovodrun, mpirun, Slurm, python -m law_hpc.*, "
                                       "tools/ scripts); `make test-fast` leaves these out")
    start = subprocess.Popen.__init__

    def guarded(self, args, *rest, **options):
        item = _running[0]
        if item is not None and item.get_closest_marker("slow") is None and launches(args):
            raise AssertionError(f"{item.nodeid} launches {args!r}: mark it @pytest.mark.slow")
        start(self, args, *rest, **options)
    subprocess.Popen.__init__ = guarded


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running[0] = item
    try:
        return (yield)
    finally:
        _running[0] = None


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The run directory of a finished one-rank search on configs/smoke.yaml, shared by every test that only reads
    such a search's outputs (its policy, its metrics, the equality of a resumed run with it). Never write into it."""
    from search_helpers import finished_smoke_search
    return finished_smoke_search(tmp_path_factory, "smoke")
