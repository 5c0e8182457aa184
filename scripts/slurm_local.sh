#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing hydra/launcher=slurm against a real SLURM.
#
#   sudo bash scripts/slurm_local.sh start    # install (Debian packages) if needed, start every daemon
#   sudo bash scripts/slurm_local.sh status   # the daemons and sinfo
#   sudo bash scripts/slurm_local.sh stop     # stop every daemon by its PID
#
# Runs as root without systemd: munged as the munge user, MariaDB for accounting, slurmdbd, slurmctld and
# slurmd with a one-node slurm.conf (proctrack/linuxproc, task/none, select/cons_tres). Accounting matters:
# without slurmdbd, `sacct` knows nothing, and submitit polls a cancelled job forever; with it a cancelled
# cell fails the multirun cleanly and a rerun skips the finished cells. Idempotent: `start` on a running
# cluster changes nothing, `stop` on a stopped one neither. State lives in $SLURM_LOCAL_DIR.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/unlearn-bench-slurm}
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stopped in this order, started in the reverse

pid_of() { [[ -s "$DIR/$1.pid" ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null && cat "$DIR/$1.pid"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq "$((seconds * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "slurm_local: $what did not come up within ${seconds}s (logs in $DIR)" >&2
    return 1
}

install() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd munged mariadbd; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    echo "slurm_local: installing slurm-wlm, slurmdbd, munge, mariadb-server (missing: ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm slurmdbd munge \
        mariadb-server >"$DIR/apt.log" 2>&1 || {
        apt-get update >>"$DIR/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm slurmdbd munge \
            mariadb-server >>"$DIR/apt.log" 2>&1
    }
}

write_configs() {
    mkdir -p "$DIR"/{spool/ctld,spool/d,mysql,run} /etc/slurm /etc/munge
    cat >/etc/slurm/slurm.conf <<EOF
ClusterName=unlearnbench
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
StoragePort=3306
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
    pid_of munged >/dev/null && return 0
    if pid=$(pgrep -x -u munge munged | head -1) && [[ -n $pid ]]; then echo "$pid" >"$DIR/munged.pid"; return 0; fi
    [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown -R munge:munge /etc/munge; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid
    su -s /bin/sh munge -c "munged" 2>>"$DIR/munged.log" || true
    wait_for 10 munged test -s /run/munge/munged.pid
    cp /run/munge/munged.pid "$DIR/munged.pid"
}

start_mariadb() {
    pid_of mariadbd >/dev/null && return 0
    if [[ ! -d "$DIR/mysql/mysql" ]]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" >"$DIR/mariadb-install.log" 2>&1
    fi
    mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --port=3306 \
        --bind-address=127.0.0.1 --pid-file="$DIR/mariadbd.pid" --skip-log-bin >"$DIR/mariadbd.log" 2>&1 &
    wait_for 60 mariadb mariadb --socket="$DIR/run/mysqld.sock" -e "select 1"
    mariadb --socket="$DIR/run/mysqld.sock" <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurm() {
    if ! pid_of slurmdbd >/dev/null; then
        slurmdbd
        wait_for 60 slurmdbd sacctmgr -i list cluster
    fi
    sacctmgr -i add cluster unlearnbench >/dev/null 2>&1 || true
    if ! pid_of slurmctld >/dev/null; then
        slurmctld
        wait_for 60 slurmctld scontrol ping
    fi
    if ! pid_of slurmd >/dev/null; then
        slurmd
    fi
    wait_for 60 "node $NODE" sh -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'"
}

stop() {
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$daemon"); then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/$daemon.pid"
    done
}

status() {
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$daemon"); then echo "$daemon: running ($pid)"; else echo "$daemon: stopped"; fi
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
    start)
        [[ $(id -u) -eq 0 ]] || { echo "slurm_local: run as root (the daemons are started by hand)" >&2; exit 2; }
        mkdir -p "$DIR"
        install
        write_configs
        start_munge
        start_mariadb
        start_slurm
        echo "slurm_local: cluster up (partition 'local', node $NODE, $CPUS CPUs); state in $DIR"
        ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
