#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for CI and local tests: munged, [mariadbd + slurmdbd], slurmctld, slurmd.
#
#   bash scripts/slurm-local.sh start    # install if needed, configure, start, wait until the node is idle
#   bash scripts/slurm-local.sh status   # recorded daemons and the node state
#   bash scripts/slurm-local.sh stop     # TERM, then KILL, the recorded PIDs only, in reverse start order
#
# Idempotent, as root, without systemd. Every daemon runs in the foreground under nohup so that `$!` is its real PID;
# the PIDs live in $LOCAL_SLURM_STATE/pids (munged daemonizes itself: its PID comes from its pidfile).
# Overrides: LOCAL_SLURM_STATE (default /var/tmp/wirehead-slurm), WITH_SLURMDBD=0|1 (default 1: sacct works, as on
# real clusters), CLUSTER (default local), ACCOUNT (default local), PARTITION (default debug), SLURM_CPUS,
# SLURM_MEM_MB (default 90 % of what `slurmd -C` detects), READY_TIMEOUT_S (default 90).
# Background and pitfalls: shared/reference/slurm-local-cluster.md.
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/tmp/wirehead-slurm}
WITH_SLURMDBD=${WITH_SLURMDBD:-1}
CLUSTER=${CLUSTER:-local}
ACCOUNT=${ACCOUNT:-local}
PARTITION=${PARTITION:-debug}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-90}
HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_PASS=wirehead-local-slurm   # the DB binds 127.0.0.1 only and holds nothing but this cluster's accounting
# Start order; stop walks it backwards.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf 'slurm-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }

# Alive and still the program we recorded (guards against a reused PID).
alive() {
  local name=$1 pid
  pid=$(pid_of "$name")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]]
}

need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# ------------------------------------------------------------------------------------------------ install
install_packages() {
  local pkgs=(munge slurmctld slurmd slurm-client) missing=()
  [[ $WITH_SLURMDBD == 1 ]] && pkgs+=(slurmdbd mariadb-server)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Keep postinst scripts from starting munge/mariadb: an unrecorded daemon would hold the socket we need.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (rc $rc)"
}

# ------------------------------------------------------------------------------------------------ helpers
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

launch() {  # launch NAME COMMAND...: run in the foreground under nohup, record $!
  local name=$1
  shift
  nohup "$@" >"$STATE/log/$name.out" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name.pid"
  log "started $name (pid $!)"
}

stop_one() {  # TERM, wait, KILL: only the recorded PID
  local name=$1 pid i
  pid=$(pid_of "$name")
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored TERM for 15 s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$STATE/pids/$name.pid"
}

node_ready() {  # exactly idle|mixed|allocated: `idle*` means slurmd is not responding yet
  scontrol ping 2>/dev/null | grep -q UP || return 1
  sinfo -h -N -n "$HOST" -o %t 2>/dev/null | grep -Eqx 'idle|mixed|allocated'
}

# ------------------------------------------------------------------------------------------------ munge
start_munge() {
  alive munged && return 0
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for 10 munged test -s /run/munge/munged.pid || die "munged wrote no pidfile"
  cp /run/munge/munged.pid "$STATE/pids/munged.pid"
  log "started munged (pid $(pid_of munged))"
  wait_for 10 "munge self-test" bash -c 'munge -n | unmunge' || die "munge self-test failed"
}

# ------------------------------------------------------------------------------------------------ mariadb + slurmdbd
start_mariadb() {
  alive mariadbd && return 0
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    log "initialising /var/lib/mysql"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/log/mariadb-install-db.out" 2>&1 \
      || die "mariadb-install-db failed: $(tail -5 "$STATE/log/mariadb-install-db.out")"
  fi
  launch mariadbd /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M
  wait_for 60 mariadbd mariadb-admin --socket=/run/mysqld/mysqld.sock ping \
    || die "mariadbd did not answer: $(tail -5 "$STATE/log/mariadbd.out")"
  mariadb --socket=/run/mysqld/mysqld.sock -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

write_dbd_conf() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  install -m 600 -o root -g root "$tmp" "$DBD_CONF"  # slurmdbd refuses a conf readable by others
  rm -f "$tmp"
}

start_slurmdbd() {
  write_dbd_conf
  alive slurmdbd || launch slurmdbd /usr/sbin/slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -n -P list cluster \
    || die "slurmdbd did not answer: $(tail -5 "$STATE/log/slurmdbd.out")"
}

# -P: the default table output cuts names at 10 characters, which made the idempotency check fail.
ensure_associations() {
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null || true
  sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=wirehead Organization=wirehead \
      >/dev/null || true
  sacctmgr -n -P list user format=user | grep -qx root \
    && sacctmgr -n -P list assoc user=root format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null || true
}

# ------------------------------------------------------------------------------------------------ slurm.conf
write_slurm_conf() {  # returns 0 when the file changed
  local detected cpus boards sockets cores threads mem acct gather tmp
  detected=$(slurmd -C | head -1)
  field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$detected"; }
  cpus=${SLURM_CPUS:-$(field CPUs)}
  boards=$(field Boards); sockets=$(field SocketsPerBoard); cores=$(field CoresPerSocket)
  threads=$(field ThreadsPerCore)
  mem=${SLURM_MEM_MB:-$(($(field RealMemory) * 9 / 10))}  # all of it gets the node DRAINED for "Low RealMemory"
  local topology="Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
  local overrides=""
  # Declaring more CPUs than the machine has (SLURM_CPUS) lets jobs that each ask for a core run side by side;
  # slurmd would otherwise mark the node invalid.
  [[ -n ${SLURM_CPUS:-} ]] && topology="" && overrides="SlurmdParameters=config_overrides"
  if [[ $WITH_SLURMDBD == 1 ]]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
    gather=jobacct_gather/linux
  else
    acct="AccountingStorageType=accounting_storage/none"
    gather=jobacct_gather/none
  fi
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on 127.0.0.1. No cgroup.conf on purpose (22.05 rejects
# CgroupPlugin=disabled; the autodetected default works).
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job lacking --mem gets the whole node's memory and blocks every other job.
DefMemPerCPU=1000
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# Finished jobs must stay visible well beyond the executor plugin's longest status poll (180 s).
MinJobAge=600
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
$acct
JobAcctGatherType=$gather
$overrides
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$cpus $topology RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
    rm -f "$tmp"
    return 1
  fi
  install -m 644 "$tmp" "$CONF"
  rm -f "$tmp"
  log "wrote $CONF ($cpus CPUs, $mem MB)"
  return 0
}

# ------------------------------------------------------------------------------------------------ commands
cmd_start() {
  need_root
  local t0=$SECONDS
  install -d -m 0755 "$STATE" "$STATE/pids" "$STATE/log"
  install_packages
  getent hosts "$HOST" >/dev/null || { echo "127.0.0.1 $HOST" >>/etc/hosts; log "added $HOST to /etc/hosts"; }
  install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/slurm /var/log/slurm
  start_munge
  # sacctmgr needs slurm.conf too, so it is written before slurmdbd starts.
  local changed=0
  write_slurm_conf && changed=1
  if [[ $WITH_SLURMDBD == 1 ]]; then
    start_mariadb
    start_slurmdbd
    ensure_associations
  else
    stop_one slurmdbd
    stop_one mariadbd
  fi
  # AccountingStorageType changes need a real restart, not `scontrol reconfigure`.
  if ((changed)); then
    stop_one slurmd
    stop_one slurmctld
  fi
  alive slurmctld || launch slurmctld /usr/sbin/slurmctld -D -i
  alive slurmd || launch slurmd /usr/sbin/slurmd -D -N "$HOST"
  if ! wait_for "$READY_TIMEOUT_S" "node idle" node_ready; then
    sinfo -N -l >&2 || true
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    die "node $HOST not idle within $READY_TIMEOUT_S s"
  fi
  log "cluster $CLUSTER up: node $HOST $(sinfo -h -N -n "$HOST" -o %t), partition $PARTITION," \
    "accounting $([[ $WITH_SLURMDBD == 1 ]] && echo slurmdbd || echo none) ($((SECONDS - t0)) s)"
}

cmd_stop() {
  need_root
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_one "${DAEMONS[i]}"; done
}

cmd_status() {
  local d rc=0
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then echo "$d: running (pid $(pid_of "$d"))"
    elif [[ -n $(pid_of "$d") ]]; then echo "$d: dead (recorded pid $(pid_of "$d"))"; rc=1
    else echo "$d: not started"; fi
  done
  if node_ready; then echo "node $HOST: $(sinfo -h -N -n "$HOST" -o %t)"; else echo "node $HOST: not ready"; rc=1; fi
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
