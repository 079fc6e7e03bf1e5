#!/bin/bash
# Test phase on ImageNet: ResNet-18 (or --set model.name=resnet50 ...) with a learned policy, 2 x 4 GPUs.
#   sbatch slurm/train_imagenet.sh --policy runs/search-imagenet-<jobid>/policy.h5
# Sites change: partition/account, --nodes, --gpus-per-node = --ntasks-per-node (one GPU bound per rank),
# --cpus-per-task (cores bound per rank), --mem-per-cpu, --time; more knobs in slurm/common.sh.
#SBATCH --job-name=law-train-imagenet
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=12
#SBATCH --mem-per-cpu=4G
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

LAW_MODULE=law_hpc.train
LAW_CONFIG="${LAW_CONFIG:-configs/imagenet_noisy_resnet18.yaml}"
LAW_RUN_NAME=train-imagenet
source "${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
