#!/bin/bash
# LAW search on Fashion-MNIST (the project's default search), one searcher per GPU.
#   sbatch slurm/search_fmnist.sh [--set key=value ...]       (from the repository root)
#   LAW_CONFIG=configs/smoke.yaml sbatch slurm/search_fmnist.sh
# Sites change: partition/account, --gpus-per-node and --ntasks-per-node (equal: one rank per GPU, each
# rank bound to its own GPU), --cpus-per-task (each rank bound to that many cores), --mem-per-cpu, --time.
# On a CPU-only node submit with `sbatch --gpus-per-node=0 ...`. More knobs (requeue cap, GPU binding):
# slurm/common.sh. The time limit requeues the job (--signal=B:USR1), scancel ends it.
#SBATCH --job-name=law-search-fmnist
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --gpus-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2G
#SBATCH --time=01:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

LAW_MODULE=law_hpc.search
LAW_CONFIG="${LAW_CONFIG:-configs/fmnist_noisy_mlp.yaml}"
LAW_RUN_NAME=search-fmnist
source "${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
