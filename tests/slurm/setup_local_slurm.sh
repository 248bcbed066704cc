#!/usr/bin/env bash
# Adapted from the project's tested recipe (shared/slurm); used by .ci/run and tests/test_slurm.py.
# One-node SLURM "cluster" on this Debian 12 machine, for running a Snakemake workflow through
# snakemake-executor-plugin-slurm for real (sbatch, srun, sacct/squeue, scancel against a live slurmctld).
#
#   bash setup_local_slurm.sh            # install (once), write configs, start daemons, wait for 'idle'
#   bash setup_local_slurm.sh status     # what runs, sinfo
#   bash setup_local_slurm.sh stop       # stop the daemons this script started (by their PID files)
#
# Idempotent: packages are installed only when missing, configs are rewritten every time and a daemon
# whose config changed is restarted; running daemons are left alone otherwise.
#
# Settings (environment):
#   ACCOUNTING=none      (default) no database: sacct fails ("Slurm accounting storage is disabled"),
#                        so the workflow profile polls with `slurm-status-command: squeue`, as
#                        workflow/profiles/slurm does (plugin 2.8.0 would otherwise lose every job).
#   ACCOUNTING=slurmdbd  slurmdbd + a local MariaDB: sacct works (and its failure reasons).
#   SLURM_ACCOUNT=rohydr the account created in slurmdbd for root (use it as ROHYDR_SLURM_ACCOUNT).
#   SLURM_MEM_MB=20000   RealMemory of the node; SLURM_CPUS=$(nproc).
#   PARTITIONS="cpu gpu" partitions on the one node (the gpu partition has no GPUs).
set -euo pipefail

ACCOUNTING=${ACCOUNTING:-none}
SLURM_ACCOUNT=${SLURM_ACCOUNT:-rohydr}
SLURM_MEM_MB=${SLURM_MEM_MB:-20000}
SLURM_CPUS=${SLURM_CPUS:-$(nproc)}
PARTITIONS=${PARTITIONS:-"cpu gpu"}
NODE=$(hostname -s)
CLUSTER=local
STATE_DIR=${STATE_DIR:-/run/local-slurm}   # where this script records the PIDs it started
mkdir -p "$STATE_DIR"

log() { printf '[setup_local_slurm %(%T)T] %s\n' -1 "$*"; }

pid_alive() {  # pid_alive PIDFILE NAME: the pid in PIDFILE is running and is NAME
    local f=$1 name=$2 pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ -d /proc/$pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: TERM the recorded pid, wait up to 30 s
    local f=$1 name=$2 pid i
    if pid_alive "$f" "$name"; then
        pid=$(<"$f")
        log "stopping $name (pid $pid)"
        kill "$pid"
        for i in $(seq 60); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
        [[ -d /proc/$pid ]] && { log "WARNING: $name (pid $pid) still running after 30 s"; return 1; }
    fi
    rm -f "$f"
}

do_stop() {
    stop_pidfile "$STATE_DIR/slurmd.pid" slurmd
    stop_pidfile "$STATE_DIR/slurmctld.pid" slurmctld
    stop_pidfile "$STATE_DIR/slurmdbd.pid" slurmdbd
    stop_pidfile "$STATE_DIR/mariadbd.pid" mariadbd
    stop_pidfile "$STATE_DIR/munged.pid" munged
}

do_status() {
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid_alive "$STATE_DIR/$d.pid" "$d"; then echo "$d: running, pid $(<"$STATE_DIR/$d.pid")"
        else echo "$d: not running (from this script)"; fi
    done
    sinfo 2>&1 || true
}

case ${1:-start} in
    stop) do_stop; exit 0 ;;
    status) do_status; exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- 1. packages
pkgs=(slurmctld slurmd slurm-client munge)
[[ $ACCOUNTING == slurmdbd ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    t0=$(date +%s)
    apt-get update -qq
    # The postinst scripts try to start the services; with no systemd / policy-rc.d they are refused
    # ("invoke-rc.d: policy-rc.d denied execution of start"): harmless, this script starts them.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "installed in $(( $(date +%s) - t0 )) s"
fi

# ---------------------------------------------------------------- 2. configs
mkdir -p /run/munge /run/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
chown munge:munge /run/munge && chmod 755 /run/munge
chown slurm:slurm /run/slurm /var/log/slurm /var/lib/slurm/slurmctld
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi

write_if_changed() {  # write_if_changed FILE < content; returns 0 when the file changed
    local f=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
    mv "$tmp" "$f" && chmod 644 "$f"
    return 0
}

if [[ $ACCOUNTING == slurmdbd ]]; then
    acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
    acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
partition_lines=""
default=YES
for p in $PARTITIONS; do
    partition_lines+="PartitionName=$p Nodes=$NODE Default=$default MaxTime=INFINITE State=UP"$'\n'
    default=NO
done

slurm_conf_changed=0
write_if_changed /etc/slurm/slurm.conf <<EOF && slurm_conf_changed=1 || true
# Written by setup_local_slurm.sh: one node ($NODE), partitions: $PARTITIONS, accounting: $ACCOUNTING.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup plugins: this machine is a sandbox (gVisor) with cgroup v1 mounts only half usable.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$acct_lines
JobCompType=jobcomp/none
# The plugin's squeue status path needs finished jobs to stay visible >= 3 x 40 s (default 300).
MinJobAge=300
# Refuse at submission what the node can never run (e.g. --cpus-per-task=4 on 2 CPUs): without it
# sbatch accepts the job and it pends forever with Reason=PartitionConfig.
EnforcePartLimits=ALL
ReturnToService=2
SlurmdTimeout=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$SLURM_CPUS RealMemory=$SLURM_MEM_MB State=UNKNOWN
$partition_lines
EOF

dbd_conf_changed=0
if [[ $ACCOUNTING == slurmdbd ]]; then
    write_if_changed /etc/slurm/slurmdbd.conf <<EOF && dbd_conf_changed=1 || true
# Written by setup_local_slurm.sh. MariaDB user 'slurm' authenticates by unix socket: no password.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
fi

# ---------------------------------------------------------------- 3. daemons
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local n=$1 what=$2 i; shift 2
    for ((i = 0; i < n * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    log "ERROR: timed out after $n s waiting for $what"; return 1
}

start_slurm_daemon() {  # start_slurm_daemon NAME: start /usr/sbin/NAME (it forks) unless it runs; record its PID
    local d=$1
    pid_alive "$STATE_DIR/$d.pid" "$d" && return 0
    log "starting $d"
    rm -f "/run/slurm/$d.pid"
    "/usr/sbin/$d"
    wait_for 30 "$d" test -s "/run/slurm/$d.pid"
    cp "/run/slurm/$d.pid" "$STATE_DIR/$d.pid"
}

# munged (forks; writes /run/munge/munged.pid)
if ! pid_alive "$STATE_DIR/munged.pid" munged; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munged test -s /run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
fi
wait_for 10 "munge round trip" bash -c 'munge -n | unmunge'

if [[ $ACCOUNTING == slurmdbd ]]; then
    # MariaDB (does not fork: started in its own session, pid from its pid-file)
    if ! pid_alive "$STATE_DIR/mariadbd.pid" mariadbd; then
        log "starting mariadbd"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        rm -f /run/mysqld/mysqld.pid
        setsid /usr/sbin/mariadbd --user=mysql --innodb-buffer-pool-size=256M \
            --innodb-lock-wait-timeout=900 >/var/log/slurm/mariadbd.out 2>&1 </dev/null &
        wait_for 60 mariadbd mariadb-admin --silent ping
        cp /run/mysqld/mysqld.pid "$STATE_DIR/mariadbd.pid"
    fi
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    # slurmdbd (forks; writes /run/slurm/slurmdbd.pid)
    if ((dbd_conf_changed)) && pid_alive "$STATE_DIR/slurmdbd.pid" slurmdbd; then
        log "slurmdbd.conf changed: restarting slurmdbd"; stop_pidfile "$STATE_DIR/slurmdbd.pid" slurmdbd
    fi
    start_slurm_daemon slurmdbd
    wait_for 60 "slurmdbd answering" sacctmgr -n list cluster
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
else
    # ACCOUNTING=none: a slurmdbd / mariadbd that this script started earlier is not needed any more.
    stop_pidfile "$STATE_DIR/slurmdbd.pid" slurmdbd
    stop_pidfile "$STATE_DIR/mariadbd.pid" mariadbd
fi

# slurmctld and slurmd (both fork; pid files under /run/slurm). A changed slurm.conf restarts both:
# 'scontrol reconfigure' does not switch e.g. the accounting plugin.
if ((slurm_conf_changed)); then
    for d in slurmd slurmctld; do
        pid_alive "$STATE_DIR/$d.pid" "$d" && { log "slurm.conf changed: restarting $d"; stop_pidfile "$STATE_DIR/$d.pid" "$d"; }
    done
fi
start_slurm_daemon slurmctld
wait_for 30 "slurmctld answering" scontrol ping

if [[ $ACCOUNTING == slurmdbd ]]; then
    # An account for root, so the plugin's account check (sacctmgr list user root) accepts it.
    sacctmgr -n -P list account format=account | grep -qx "$SLURM_ACCOUNT" \
        || sacctmgr -i add account "$SLURM_ACCOUNT" Description=local Organization=local >/dev/null
    sacctmgr -n -P -s list user root format=account | grep -qx "$SLURM_ACCOUNT" \
        || sacctmgr -i add user root Account="$SLURM_ACCOUNT" >/dev/null
fi

start_slurm_daemon slurmd

# A node left DOWN/DRAIN by an earlier run (e.g. slurmd killed) is put back.
state=$(sinfo -h -n "$NODE" -o %T | head -1)
if [[ $state == down* || $state == drain* ]]; then
    scontrol update NodeName="$NODE" State=RESUME || true
fi
wait_for 60 "node $NODE idle" bash -c "sinfo -h -n $NODE -o %T | grep -qx idle"
log "ready: accounting=$ACCOUNTING account=$SLURM_ACCOUNT node=$NODE CPUs=$SLURM_CPUS RealMemory=$SLURM_MEM_MB"
do_status
