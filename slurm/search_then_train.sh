#!/bin/bash
# Your own data, search to model in one command: the search job, then the training job that uses its policy
# (submitted at once, it starts when the search has COMPLETED: --dependency=afterok).
#   slurm/search_then_train.sh configs/folder.yaml --set data.root=/my/data --set data.val_root=/my/trusted
# Run from the repository root. The search writes $SEARCH_DIR (default runs/<config>-search), the training
# $MODEL_DIR (default runs/<config>-model: model.pt, model_best.pt). The jobs use slurm/search_imagenet.sh and
# slurm/train_imagenet.sh (SEARCH_SCRIPT, TRAIN_SCRIPT to change); LAW_SBATCH holds sbatch options for both
# (e.g. "--gpus-per-node=4 --ntasks-per-node=4 --time=24:00:00"). Arguments after the config go to both jobs.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: slurm/search_then_train.sh CONFIG.yaml [--set key=value ...]" >&2
  exit 2
fi
config=$1; shift
name=$(basename "$config" .yaml)
search_dir="${SEARCH_DIR:-runs/$name-search}"
model_dir="${MODEL_DIR:-runs/$name-model}"
# shellcheck disable=SC2086  # LAW_SBATCH is a list of options
search_job=$(LAW_CONFIG="$config" RUN_DIR="$search_dir" sbatch --parsable ${LAW_SBATCH:-} \
             "${SEARCH_SCRIPT:-slurm/search_imagenet.sh}" "$@")
search_job="${search_job%%;*}"
# shellcheck disable=SC2086
train_job=$(LAW_CONFIG="$config" RUN_DIR="$model_dir" sbatch --parsable --dependency="afterok:$search_job" \
            --kill-on-invalid-dep=yes ${LAW_SBATCH:-} "${TRAIN_SCRIPT:-slurm/train_imagenet.sh}" \
            --policy "$search_dir/policy.h5" "$@")
echo "search job $search_job -> $search_dir; training job ${train_job%%;*} (once the search has completed) -> $model_dir"
