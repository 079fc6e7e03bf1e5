#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests and local trials (needs root).
#   bash tools/slurm_local.sh start [STATE_DIR]   # prints: export SLURM_CONF=STATE_DIR/slurm.conf
#   bash tools/slurm_local.sh stop  [STATE_DIR]
# Idempotent: `start` with the daemons up returns at once. STATE_DIR defaults to $LAW_SLURM_DIR or
# /tmp/law_slurm.
set -euo pipefail
action="${1:-start}"
state="${2:-${LAW_SLURM_DIR:-/tmp/law_slurm}}"
conf="$state/slurm.conf"
die() { echo "slurm_local: $*" >&2; exit 1; }

stop() {
  pkill -f "slurmctld -f $conf" 2>/dev/null || true
  pkill -f "slurmd -f $conf" 2>/dev/null || true
  sleep 1
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || die "usage: slurm_local.sh start|stop [STATE_DIR]"
[ "$(id -u)" = 0 ] || die "needs root (munge key, daemons as root)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! dpkg -s libpmix-dev >/dev/null 2>&1; then
  command -v apt-get >/dev/null || die "slurm-wlm, munge and libpmix-dev are missing and apt-get is not available"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge libpmix-dev >/dev/null
fi

if [ -f "$conf" ] && SLURM_CONF="$conf" sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|alloc"; then
  echo "export SLURM_CONF=$conf"; exit 0
fi

# munge: one key, daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --force
munge -n | unmunge >/dev/null || die "munge does not work"

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
mkdir -p "$state"/{spool,state,log}
cat > "$conf" <<CONF
ClusterName=lawlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.txt
SchedulerParameters=sched_interval=1,bf_interval=1
KillWait=5
MinJobAge=300
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

stop
SLURM_CONF="$conf" slurmctld -f "$conf" -i
SLURM_CONF="$conf" slurmd -f "$conf"
for _ in $(seq 60); do
  if SLURM_CONF="$conf" sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed)"; then
    echo "export SLURM_CONF=$conf"; exit 0
  fi
  sleep 0.5
done
tail -20 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
die "the node did not become idle within 30 s (logs above)"
