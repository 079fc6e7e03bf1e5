# Shared body of the law_hpc batch scripts: sourced by slurm/*.sh after their #SBATCH header.
# The caller sets LAW_MODULE (law_hpc.search | law_hpc.train), LAW_CONFIG and LAW_RUN_NAME.
#
# Stops. The ranks checkpoint (within about stop_check_seconds of training, default 60; mid-stage if need
# be) and exit 75 on SIGUSR1 or SIGTERM. What happens next depends on what the batch shell was sent:
#   SIGUSR1: the time limit (--signal=B:USR1@secs) or preemption (SlurmctldParameters=preempt_send_user_signal
#            with the partition's GraceTime): the job is requeued (same job id, same run directory) and
#            resumes from the checkpoint, up to LAW_MAX_REQUEUES times.
#   SIGTERM: scancel (or Slurm ending the job itself): the job ends, not requeued; the run directory keeps
#            the checkpoint (submit again with RUN_DIR=<it> to continue).
# A site whose preemption sends SIGTERM without the user signal gets no requeue from us (PreemptMode=REQUEUE
# requeues on its own). The --signal lead time must cover stop_check_seconds, one iteration and writing the
# checkpoint (Slurm may send the signal up to a minute early, never late). A node failure: Slurm cancels
# the job and, as the scripts ask for --requeue, requeues it; the ranks resume from the last checkpoint
# every rank holds.
#
# Site knobs (environment variables, all optional):
#   LAW_HPC_ROOT      repository checkout (default: the directory sbatch was called from)
#   LAW_VENV          virtual environment to activate (default: $LAW_HPC_ROOT/.venv); or load your modules
#   RUN_DIR           run directory (default: runs/<job name>-<job id>, stable across requeues)
#   LAW_SRUN_MPI      srun --mpi plugin (default pmix; Debian/Ubuntu Open MPI supports PMIx only)
#   LAW_MAX_REQUEUES  requeues after which the job fails instead (default 20; counted by SLURM_RESTART_COUNT)
#   LAW_GPUS_PER_TASK GPUs bound to each rank when the job has GPUs (default 1; 0: every rank sees every GPU)
#   LAW_SRUN_WAIT     seconds the other ranks get to finish once one has ended (default 30; then srun ends them)
# and the #SBATCH lines of each script: --cpus-per-task (passed on to srun: since Slurm 22.05 srun does not
# inherit it), --gpus-per-node (= --ntasks-per-node; 0 on a CPU-only node), --mem-per-cpu, --time.
set -uo pipefail

EXIT_PREEMPTED=75
LAW_HPC_ROOT="${LAW_HPC_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
cd "$LAW_HPC_ROOT" || { echo "law_hpc: cannot cd to LAW_HPC_ROOT=$LAW_HPC_ROOT" >&2; exit 2; }
LAW_VENV="${LAW_VENV:-$LAW_HPC_ROOT/.venv}"
if [ -f "$LAW_VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$LAW_VENV/bin/activate"
else
  echo "law_hpc: no virtual environment at $LAW_VENV (run 'make setup' or set LAW_VENV); using $(command -v python3)" >&2
fi

# Shared parallel file systems (Lustre, GPFS, NFS) often lack the POSIX locks HDF5 uses by default.
export HDF5_USE_FILE_LOCKING=FALSE
# torch threads per rank follow OMP_NUM_THREADS: the cores srun binds each task to (below).
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
RUN_DIR="${RUN_DIR:-runs/${LAW_RUN_NAME}-${SLURM_JOB_ID:-local}}"
mkdir -p "$(dirname "$RUN_DIR")"
LAW_MAX_REQUEUES="${LAW_MAX_REQUEUES:-20}"
law_restarts="${SLURM_RESTART_COUNT:-0}"
# The ranks: tasks per node x the nodes this run holds. A requeued job may hold fewer nodes than it was submitted
# with (scontrol update jobid=<id> NumNodes=1-1 NumTasks=1 NumCPUs=1 after a node failure) while its SLURM_NTASKS
# still says the old count; the search then continues on fewer searchers (search.allow_resize).
law_ntasks="${SLURM_NTASKS:-1}"
if [ -n "${SLURM_NTASKS_PER_NODE:-}" ] && [ -n "${SLURM_JOB_NUM_NODES:-}" ]; then
  law_per_node="${SLURM_NTASKS_PER_NODE%%[!0-9]*}"  # "2" or "2(x3)"
  law_held=$(( law_per_node * SLURM_JOB_NUM_NODES ))
  [ "$law_held" -lt "$law_ntasks" ] && law_ntasks="$law_held"
fi

echo "law_hpc: $(date "+%F %T") job ${SLURM_JOB_ID:-?} restart $law_restarts on ${SLURM_JOB_NODELIST:-$(hostname)}:" \
     "$law_ntasks ranks, run dir $RUN_DIR"
# Slurm requeues on its own too (node failure, PreemptMode=REQUEUE): the cap holds for those as well.
if [ "$law_restarts" -gt "$LAW_MAX_REQUEUES" ]; then
  echo "law_hpc: job ${SLURM_JOB_ID:-?} failed: requeued $law_restarts times, more than LAW_MAX_REQUEUES=$LAW_MAX_REQUEUES;" \
       "its checkpoint is in $RUN_DIR (submit again with RUN_DIR=$RUN_DIR to continue)" >&2
  exit 1
fi

# Not --kill-on-bad-exit: a rank exiting 75 first would get the others killed while they still close their
# files (the job then ends 143, not 75, and is not requeued). Instead, LAW_SRUN_WAIT s after the first rank
# ends srun ends the rest: ranks left waiting in a collective for a crashed one stop within that time.
law_srun=(srun --mpi="${LAW_SRUN_MPI:-pmix}" --kill-on-bad-exit=0 --wait="${LAW_SRUN_WAIT:-30}" --ntasks="$law_ntasks")
# Each task gets (and is bound to) the cores the job asked per task, not one core.
[ -n "${SLURM_CPUS_PER_TASK:-}" ] && law_srun+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
# One GPU per task, bound: each rank sees only its own (CUDA_VISIBLE_DEVICES) and uses cuda:0.
law_gpus="${LAW_GPUS_PER_TASK:-1}"
if [ "$law_gpus" != 0 ] && { [ "${SLURM_GPUS_ON_NODE:-0}" != 0 ] || [ -n "${SLURM_JOB_GPUS:-}" ]; }; then
  law_srun+=(--gpus-per-task="$law_gpus")
fi

law_srun_pid=""
law_stop=""  # USR1 (requeue) or TERM (stop for good), as the batch shell was sent; TERM wins
law_forward() {
  if [ "$1" = TERM ] || [ -z "$law_stop" ]; then law_stop="$1"; fi
  echo "law_hpc: $(date "+%F %T") got SIG$1, asking the ranks to checkpoint (within stop_check_seconds of training)" >&2
  # USR1 in both cases: srun relays it to every task, whereas a SIGTERM to srun makes it SIGKILL them.
  [ -n "$law_srun_pid" ] && kill -s USR1 "$law_srun_pid" 2>/dev/null
}
trap 'law_forward USR1' USR1
trap 'law_forward TERM' TERM

"${law_srun[@]}" python -m "$LAW_MODULE" --config "$LAW_CONFIG" --run-dir "$RUN_DIR" "$@" &
law_srun_pid=$!
if [ -n "$law_stop" ]; then  # the signal came before srun existed: pass it on once srun has its handlers
  sleep 2 && kill -s USR1 "$law_srun_pid" 2>/dev/null
fi
# `wait` returns early when a trapped signal arrives: keep waiting until srun itself has ended.
while true; do
  wait "$law_srun_pid"
  status=$?
  kill -0 "$law_srun_pid" 2>/dev/null || break
done

if [ "$status" -eq "$EXIT_PREEMPTED" ]; then
  law_state="$(scontrol show job "${SLURM_JOB_ID:-}" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)"
  if [ "$law_stop" = TERM ] || [ "$law_state" = CANCELLED ]; then
    echo "law_hpc: stopped by SIGTERM (scancel): checkpointed in $RUN_DIR; not requeued" \
         "(submit again with RUN_DIR=$RUN_DIR to continue)" >&2
    exit "$status"
  fi
  if [ "$law_restarts" -ge "$LAW_MAX_REQUEUES" ]; then
    echo "law_hpc: job $SLURM_JOB_ID failed: checkpointed in $RUN_DIR but not requeued, as it was requeued" \
         "$law_restarts times already (LAW_MAX_REQUEUES=$LAW_MAX_REQUEUES); submit again with RUN_DIR=$RUN_DIR to continue" >&2
    exit "$status"
  fi
  echo "law_hpc: checkpointed in $RUN_DIR; requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID" && exit 0
  echo "law_hpc: scontrol requeue failed; the checkpoint is in $RUN_DIR (submit again with RUN_DIR=$RUN_DIR to continue)" >&2
fi
exit "$status"
