#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for tests/workflow/test_slurm.py (and by hand):
#   tests/slurm/localcluster.sh start STATE_DIR GPU_MODEL   -> prints "export SLURM_CONF=..." on success
#   tests/slurm/localcluster.sh stop  STATE_DIR
# Debian's slurm-wlm 22.05 with munge; slurmdbd on MariaDB, so sacct answers from real job accounting.
# Two partitions on the one node: "main" (default, no GPUs) and "gpu", whose node carries one *fake*
# GPU GRES of type GPU_MODEL (no device behind it: jobs that ask for it are scheduled, and still run on
# the CPU). Installs the Debian packages when root and they are missing. Exit 3: cannot start here.
set -euo pipefail
cmd=${1:?start|stop}
state=$(realpath -m "${2:?state dir}")
gpu_model=${3:-fake}
host=$(hostname -s)

stop() {
    for pidfile in "$state"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
    for pidfile in "$state"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

if [ "$cmd" = stop ]; then
    stop
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$state/etc/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
    exit 0
fi

cannot() { echo "localcluster: cannot start SLURM here: $*" >&2; exit 3; }

[ "$(id -u)" = 0 ] || cannot "the daemons need root (slurmd runs jobs as their user)"
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v munged >/dev/null || need+=(munge)
command -v mariadbd >/dev/null || need+=(mariadb-server)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || cannot "missing ${need[*]} and no apt-get"
    echo "localcluster: installing ${need[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >"$state.apt.log" 2>&1 ||
        cannot "apt-get install ${need[*]} failed (see $state.apt.log)"
fi

mkdir -p "$state"/{etc,run,log,spool/ctld,spool/d,db}
stop  # a previous cluster in this state dir; its saved node and job state is dropped
rm -rf "$state"/spool/ctld/* "$state"/spool/d/*

# munge: one key per machine, made by the package; the daemon runs as the munge user
if ! munge -n >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged || cannot "munged did not start"
    sleep 1
    munge -n >/dev/null || cannot "munge does not answer"
fi

# MariaDB for slurmdbd, private to the state dir, on 127.0.0.1 only (slurmdbd 22.05 cannot be given a socket)
sock="$state/run/mysql.sock"
if [ ! -d "$state/db/mysql" ]; then
    mariadb-install-db --user=root --datadir="$state/db" --auth-root-authentication-method=socket >"$state/log/mariadb-install.log" 2>&1 ||
        cannot "mariadb-install-db failed (see $state/log/mariadb-install.log)"
fi
mariadbd --user=root --datadir="$state/db" --socket="$sock" --bind-address=127.0.0.1 --port=16820 --pid-file="$state/run/mariadb.pid" \
    >"$state/log/mariadb.log" 2>&1 &
for _ in $(seq 60); do mariadb --socket="$sock" -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
mariadb --socket="$sock" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || cannot "MariaDB did not start (see $state/log/mariadb.log)"

# the node claims at least 8 CPUs (config_overrides: slurmd believes the config, not the hardware), so that
# a GPU job asking for cpus_per_gpu (the profile's train rule) can be placed on a small test machine
cpus=$(( $(nproc) > 8 ? $(nproc) : 8 ))
mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
etc="$state/etc"
cat >"$etc/slurm.conf" <<EOF
ClusterName=scmixtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/spool/ctld
SlurmdSpoolDir=$state/spool/d
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=16819
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$gpu_model:1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
# the fake GPU: slurmd counts GPUs by their device files, so it gets one that is /dev/null's twin
mkdir -p "$state/dev"
[ -c "$state/dev/fakegpu0" ] || mknod "$state/dev/fakegpu0" c 1 3
echo "NodeName=$host Name=gpu Type=$gpu_model File=$state/dev/fakegpu0" >"$etc/gres.conf"
cat >"$etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=16819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=16820
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
PidFile=$state/run/slurmdbd.pid
LogFile=$state/log/slurmdbd.log
EOF
chmod 600 "$etc/slurmdbd.conf"
export SLURM_CONF="$etc/slurm.conf"
# srun inside a job reads the default path: snakemake's slurm-jobstep plugin drops SLURM_* variables
# (SLURM_CONF among them) before it calls srun. So the default path must lead here.
if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$SLURM_CONF" ]; then
    case "$(readlink /etc/slurm/slurm.conf)" in
        */etc/slurm.conf) ;;  # another localcluster state dir's: replaced
        *) cannot "/etc/slurm/slurm.conf exists and is not a test cluster's: this machine has a real SLURM" ;;
    esac
fi
mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf

slurmdbd || cannot "slurmdbd did not start (see $state/log/slurmdbd.log)"
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster scmixtest >/dev/null 2>&1 || true
sacctmgr -n list cluster format=cluster | grep -q scmixtest || cannot "slurmdbd does not answer (see $state/log/slurmdbd.log)"
slurmctld || cannot "slurmctld did not start (see $state/log/slurmctld.log)"
slurmd || cannot "slurmd did not start (see $state/log/slurmd.log)"
for _ in $(seq 60); do
    sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
    sleep 0.5
done
sinfo -h -N -o '%t' | grep -qE '^(idle|mix|alloc)' || cannot "the node did not come up: $(sinfo -h -N -o '%t %E' 2>&1)"
echo "export SLURM_CONF=$SLURM_CONF"
