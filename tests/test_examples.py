"""The examples/ scripts the README points to run as shipped (real data, a shipped policy)."""
import re
import subprocess
import sys

import pytest

from search_helpers import REPO

pytestmark = pytest.mark.slow  # every test here launches jobs


@pytest.mark.parametrize("policy", ["fmnist_noisy_mlp", "fmnist_noisy_mlp_valrank"])  # batch rank; validation losses
def test_the_policy_in_your_own_loop_example_trains(policy):
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "policy_in_your_loop.py"), "--epochs", "2",
                           "--images", "3000", "--policy", policy], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracies = [float(value) for value in re.findall(r"test accuracy (\d\.\d+)", proc.stdout)]
    assert len(accuracies) == 2 and accuracies[-1] > 0.4, proc.stdout  # learns (chance: 0.1)
