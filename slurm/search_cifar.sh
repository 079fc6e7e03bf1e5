#!/bin/bash
# LAW search on CIFAR-10 (40 % symmetric noise, ResNet-18; paper Sec. 4), one searcher per GPU.
#   sbatch slurm/search_cifar.sh [--set data.root=/path/to/cifar-10-batches-py ...]
#   LAW_CONFIG=configs/cifar100_noisy_wrn28_10.yaml sbatch slurm/search_cifar.sh
# Sites change: partition/account, --gpus-per-node = --ntasks-per-node (one GPU bound per rank),
# --cpus-per-task (cores bound per rank), --mem-per-cpu, --time; more knobs in slurm/common.sh.
#SBATCH --job-name=law-search-cifar
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem-per-cpu=4G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

LAW_MODULE=law_hpc.search
LAW_CONFIG="${LAW_CONFIG:-configs/cifar10_noisy_resnet18.yaml}"
LAW_RUN_NAME=search-cifar
source "${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
