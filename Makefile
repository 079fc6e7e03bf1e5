# The two commands of the README. Both set the environment up first (idempotent, seconds when done).
PY := .venv/bin/python
NP ?= 2
ARGS ?=

.PHONY: setup search test test-fast bench docs clean-runs

setup:
	bash tools/setup_env.sh --slurm

# The main job: a real LAW search on Fashion-MNIST with $(NP) Horovod ranks (configs/fmnist_noisy_mlp.yaml).
# Launched by mpirun, not horovodrun, whose --tag-output prefixes every line with [rank]<stdout>:
# (`horovodrun -np 2 python -m law_hpc.search` runs the same search). Open MPI asks root to confirm.
search: setup
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np $(NP) --bind-to none --oversubscribe \
		$(PY) -m law_hpc.search $(ARGS)

# Every test (what CI runs), on 2 workers, each module on one (tests/conftest.py). `make test-fast`: those
# that launch no process, for the inner loop. The slowest 15 tests are listed at the end of a run.
test: setup
	$(PY) -m pytest tests -q -ra -n 2 --dist loadfile --durations=15

test-fast: setup
	$(PY) -m pytest tests -q -ra -m "not slow"

# The test-phase benchmark of the README: 3 settings x every registered method x 3 seeds (a LAW search per setting), then
# what more searchers buy for the same searcher-episodes (N_a = 1, 2, 4 on noisy_mlp, every episode run), and what
# early stopping (search.patience, default 1) saves. Hours on 2 cores.
bench: setup
	$(PY) tools/run_benchmark.py --out runs/benchmark
	$(PY) tools/run_benchmark.py --out runs/searchers --settings noisy_mlp --methods law --search-ranks 2 1 4 --gloo \
		--searcher-episodes 80 --set search.patience=0 --table searchers.md
	$(PY) tools/run_benchmark.py --out runs/patience --settings noisy_mlp --methods law --search-ranks 1 4 --gloo \
		--searcher-episodes 80 --table searchers.md

clean-runs:
	rm -rf runs

# docs/benchmarks.md from the results files in docs/results/ (tools/run_benchmark.py --export writes them).
docs:
	$(PY) tools/results_doc.py
