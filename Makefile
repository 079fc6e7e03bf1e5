# The two commands of the README. Both set the environment up first (idempotent, seconds when done).
PY := .venv/bin/python
NP ?= 2
ARGS ?=

.PHONY: setup search test bench clean-runs

setup:
	bash tools/setup_env.sh --slurm

# The main job: a real LAW search on Fashion-MNIST with $(NP) Horovod ranks (configs/fmnist_noisy_mlp.yaml).
search: setup
	.venv/bin/horovodrun -np $(NP) -H localhost:$(NP) $(PY) -m law_hpc.search $(ARGS)

test: setup
	$(PY) -m pytest tests -q -ra

# The test-phase benchmark of the README (search + every method, 3 seeds, 2 settings; about an hour here).
bench: setup
	$(PY) tools/run_benchmark.py --out runs/benchmark --episodes 4 --set data.augment=none

clean-runs:
	rm -rf runs
