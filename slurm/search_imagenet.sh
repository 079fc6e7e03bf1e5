#!/bin/bash
# LAW search on noisy ImageNet with 8 searchers (N_a = 8, ResNet-18; paper Sec. 4): 2 nodes x 4 GPUs.
#   sbatch slurm/search_imagenet.sh [--set data.root=/path/to/imagenet ...]
# Sites change: partition/account, --nodes x --ntasks-per-node = N_a searchers (one per GPU, bound),
# --gpus-per-node = --ntasks-per-node, --cpus-per-task (cores bound per rank: torch and DALI decoding
# threads), --mem-per-cpu, --time; more knobs in slurm/common.sh.
#SBATCH --job-name=law-search-imagenet
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

LAW_MODULE=law_hpc.search
LAW_CONFIG="${LAW_CONFIG:-configs/imagenet_noisy_resnet18.yaml}"
LAW_RUN_NAME=search-imagenet
source "${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
