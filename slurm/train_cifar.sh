#!/bin/bash
# Test phase on CIFAR: train one network with a learned policy (or a peer method), data-parallel.
#   sbatch slurm/train_cifar.sh --policy runs/search-cifar-<jobid>/policy.h5 [--set model.name=wrn28_10]
#   sbatch slurm/train_cifar.sh --method coteaching
# Sites change: partition/account, --gpus-per-node = --ntasks-per-node (one GPU bound per rank),
# --cpus-per-task (cores bound per rank), --mem-per-cpu, --time; more knobs in slurm/common.sh.
#SBATCH --job-name=law-train-cifar
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem-per-cpu=4G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

LAW_MODULE=law_hpc.train
LAW_CONFIG="${LAW_CONFIG:-configs/cifar10_noisy_resnet18.yaml}"
LAW_RUN_NAME=train-cifar
source "${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
