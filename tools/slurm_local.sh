#!/usr/bin/env bash
# A real Slurm cluster on this machine, for tests and local trials (needs root): one node, or N nodes
# (one slurmd per node, all on this host, each with its own port, spool, log and tmp directory).
#   bash tools/slurm_local.sh start [--nodes N] [--gpus G] [STATE_DIR]   # prints: export SLURM_CONF=...
#   bash tools/slurm_local.sh stop  [STATE_DIR]
# STATE_DIR defaults to $LAW_SLURM_DIR or /tmp/law_slurm (one node), /tmp/law_slurm_<N>n (N nodes). Ports:
# 6817-6818 for one node, 6820-(6820+N) for N nodes, or from $LAW_SLURM_PORT: so a one-node and an N-node
# cluster run side by side. --gpus G gives each node G stand-in GPUs (device files aliasing /dev/null: Slurm
# allocates and binds them, nothing runs on them; jobs then need --gpus-per-node=0 to run law_hpc on the CPU).
# `start` with the daemons up and the same config returns at once; `stop` stops only the daemons of
# STATE_DIR (by their pid files).
set -euo pipefail
action="${1:-start}"
shift || true
nodes=1
gpus=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a number}" ;;
    --gpus) gpus="${2:?--gpus needs a number}" ;;
    *) echo "slurm_local: unknown option $1" >&2; exit 1 ;;
  esac
  shift 2
done
[[ "$nodes" =~ ^[1-9][0-9]*$ && "$gpus" =~ ^[0-9]+$ ]] || { echo "slurm_local: --nodes $nodes --gpus $gpus: numbers please" >&2; exit 1; }
if [ "$nodes" = 1 ]; then default_state="${LAW_SLURM_DIR:-/tmp/law_slurm}"; else default_state="/tmp/law_slurm_${nodes}n"; fi
state="${1:-$default_state}"
conf="$state/slurm.conf"
die() { echo "slurm_local: $*" >&2; exit 1; }

stop() {  # the daemons whose pid files are in $state, and nothing else
  local pidfile pid pids=()
  for pidfile in "$state"/slurmctld.pid "$state"/slurmd*.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    # a stale pid file may name a pid the kernel has given to another process since
    if [[ "$pid" =~ ^[0-9]+$ ]] && grep -qE '^slurm(ctld|d)$' "/proc/$pid/comm" 2>/dev/null; then
      kill "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || die "usage: slurm_local.sh start [--nodes N] [STATE_DIR] | stop [STATE_DIR]"
[ "$(id -u)" = 0 ] || die "needs root (munge key, daemons as root)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! dpkg -s libpmix-dev >/dev/null 2>&1; then
  command -v apt-get >/dev/null || die "slurm-wlm, munge and libpmix-dev are missing and apt-get is not available"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge libpmix-dev >/dev/null
fi

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
if [ "$nodes" = 1 ]; then port="${LAW_SLURM_PORT:-6817}"; else port="${LAW_SLURM_PORT:-6820}"; fi
if [ "$nodes" = 1 ]; then node_names=("$host"); else mapfile -t node_names < <(seq -f "n%g" "$nodes"); fi
gres="" gres_conf=""
if [ "$gpus" -gt 0 ]; then
  gres=" Gres=gpu:$gpus"
  for n in "${node_names[@]}"; do gres_conf+="NodeName=$n Name=gpu File=$state/dev/$n-gpu[0-$((gpus - 1))]
"; done
fi

if [ "$nodes" = 1 ]; then
  # task/affinity binds each task to the cores it was given, by default to cores (as sites do; tests check it)
  node_conf="TaskPlugin=task/affinity
TaskPluginParam=Cores
ReturnToService=2
SlurmdPort=$((port + 1))
SlurmdSpoolDir=$state/spool
SlurmdPidFile=$state/slurmd.pid
SlurmdLogFile=$state/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb$gres State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
else
  # N slurmd on one host: each its own port, spool, pid file, log and TmpFS (else the steps' PMIx
  # directories collide: pmixp_mkdir "/tmp/spmix_appdir_0_<job>.<step>": File exists). Every node
  # believes it owns cores 0..k-1, so no binding (task/none): it would put every node's tasks on core 0.
  # ReturnToService=1: a node set down by hand (a node-loss test) stays down until resumed.
  per_node=$(( cpus / nodes > 0 ? cpus / nodes : 1 ))
  # debug2: slurmctld logs each time-limit check ("Testing job time limits"), which tests time jobs by.
  node_conf="TaskPlugin=task/none
ReturnToService=1
SlurmctldDebug=debug2
SlurmdParameters=config_overrides
SlurmdSpoolDir=$state/spool/%n
SlurmdPidFile=$state/slurmd-%n.pid
SlurmdLogFile=$state/log/slurmd-%n.log
TmpFS=$state/tmp/%n"
  for n in $(seq "$nodes"); do
    node_conf+="
NodeName=n$n NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port + n)) CPUs=$per_node Sockets=1 CoresPerSocket=$per_node ThreadsPerCore=1 RealMemory=$((mem_mb / nodes))$gres State=UNKNOWN"
  done
  node_conf+="
PartitionName=debug Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
fi

new_conf="ClusterName=lawlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SlurmctldPort=$port
StateSaveLocation=$state/state
SlurmctldPidFile=$state/slurmctld.pid
SlurmctldLogFile=$state/log/slurmctld.log
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.txt
SchedulerParameters=sched_interval=1,bf_interval=1
KillWait=30
MinJobAge=300
InactiveLimit=0
GresTypes=gpu
$node_conf"

idle_nodes() { SLURM_CONF="$conf" sinfo -h -N -o "%N %T" 2>/dev/null | grep -cE " (idle|mixed|allocated)$" || true; }

if [ -f "$conf" ] && [ "$(cat "$conf")" = "$new_conf" ] && [ "$(cat "$state/gres.conf" 2>/dev/null)" = "${gres_conf%$'\n'}" ] \
   && [ "$(idle_nodes)" = "$nodes" ]; then
  echo "export SLURM_CONF=$conf"; exit 0
fi

# munge: one key, daemon as the munge user (shared by every local cluster)
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --force
munge -n | unmunge >/dev/null || die "munge does not work"

stop
mkdir -p "$state"/{spool,state,log,tmp,dev}
for n in "${node_names[@]}"; do
  mkdir -p "$state/spool/$n" "$state/tmp/$n"  # before the daemons start
  for i in $(seq 0 $((gpus - 1))); do  # slurmd takes only character devices for GPUs: /dev/null's numbers
    [ -c "$state/dev/$n-gpu$i" ] || mknod "$state/dev/$n-gpu$i" c 1 3 || die "cannot make stand-in GPU devices (mknod)"
  done
done
printf '%s\n' "$new_conf" > "$conf"
printf '%s' "$gres_conf" > "$state/gres.conf"
if [ "$nodes" = 1 ]; then
  SLURM_CONF="$conf" slurmctld -f "$conf" -i
  SLURM_CONF="$conf" slurmd -f "$conf"
else
  SLURM_CONF="$conf" slurmctld -f "$conf" -c  # a fresh start: no node left down by an earlier test
  for n in "${node_names[@]}"; do SLURM_CONF="$conf" slurmd -f "$conf" -N "$n"; done
fi
for _ in $(seq 60); do
  if [ "$(idle_nodes)" = "$nodes" ]; then echo "export SLURM_CONF=$conf"; exit 0; fi
  sleep 0.5
done
tail -20 "$state/log/"*.log >&2 || true
die "the $nodes node(s) did not become idle within 30 s (logs above)"
