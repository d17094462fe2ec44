#!/usr/bin/env bash
# A real one-node SLURM cluster on this host, for tests of the SLURM profile.
#
#   tests/slurm/cluster.sh start    install (when missing), configure, start, wait until idle
#   tests/slurm/cluster.sh stop     cancel our jobs, stop slurmctld/slurmd and our munged
#   tests/slurm/cluster.sh status   print the node line of sinfo (exit 1 when not up)
#   tests/slurm/cluster.sh env      print `export SLURM_CONF=...` for sbatch/squeue/sinfo
#
# Needs root (daemons run as root, munged as the munge user) and Debian/Ubuntu apt when
# slurm-wlm or munge is missing. Both subcommands are idempotent: a second `start` on a running
# cluster only checks it; `stop` on a stopped one does nothing; `stop` removes no config, key or
# state, so the next `start` takes seconds. One GPU is announced as a generic resource backed
# by /dev/null: SLURM then schedules `--gpus=1` and sets CUDA_VISIBLE_DEVICES without any GPU.
# slurmd runs configless (its config comes from slurmctld and is cached in /run/slurm/conf),
# so commands inside jobs find the cluster without SLURM_CONF; clients outside jobs need
# SLURM_CONF (see `env`).
#
# Exit status: 0 ok, 1 the cluster did not come up (daemon logs printed), 2 usage/not root,
# 3 slurm-wlm/munge missing and could not be installed, 4 the host has its own SLURM config.
#
# Overridable through the environment:
#   TDPCR_SLURM_DIR        state dir: config, spool, state, logs, pid files (/tmp/tdpcr-slurm)
#   TDPCR_SLURM_PARTITION  partition name, the default partition (debug)
#   TDPCR_SLURM_CLUSTER    ClusterName (tdpcr)
#   TDPCR_SLURM_GPUS       GPUs announced on the node, 0..4 (2: two one-GPU jobs at once)
#   TDPCR_SLURM_MEM_MARGIN_MB  memory kept off RealMemory for the OS and daemons (1024)
#   TDPCR_SLURM_CTLD_PORT, TDPCR_SLURM_D_PORT  slurmctld/slurmd ports (6817, 6818)
#   TDPCR_SLURM_WAIT_S     seconds to wait for the node to become idle (60)
set -euo pipefail

# Daemons and admin tools live in sbin, which a non-login shell may lack on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

STATE_DIR="${TDPCR_SLURM_DIR:-/tmp/tdpcr-slurm}"
PARTITION="${TDPCR_SLURM_PARTITION:-debug}"
CLUSTER_NAME="${TDPCR_SLURM_CLUSTER:-tdpcr}"
GPUS="${TDPCR_SLURM_GPUS:-2}"
MEM_MARGIN_MB="${TDPCR_SLURM_MEM_MARGIN_MB:-1024}"
CTLD_PORT="${TDPCR_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${TDPCR_SLURM_D_PORT:-6818}"
WAIT_S="${TDPCR_SLURM_WAIT_S:-60}"

# Every client command (sbatch, squeue, sinfo, scontrol) reads the config named here.
export SLURM_CONF="$STATE_DIR/slurm.conf"
HOST="$(hostname -s)"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
# Present only while a munged started by this script runs: `stop` kills that pid and no other.
OUR_MUNGED="$STATE_DIR/munged.pid"

log() { echo "cluster.sh: $*" >&2; }

pid_alive() {  # pid_alive PIDFILE: the pid in PIDFILE names a running process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_gone() {  # wait_gone PIDFILE SECONDS: wait for that process to exit; 1 if it did not
    local pidfile=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        pid_alive "$pidfile" || return 0
        sleep 0.1
    done
    return 1
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        log "slurm-wlm/munge are missing and apt-get is not available"
        exit 3
    fi
    log "installing slurm-wlm and munge with apt-get"
    # No init system runs the packaged services here: their postinst start attempts may fail
    # harmlessly; this script starts the daemons itself with its own config.
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge; } >"$STATE_DIR/apt.log" 2>&1; then
        tail -n 20 "$STATE_DIR/apt.log" >&2
        log "apt-get could not install slurm-wlm and munge"
        exit 3
    fi
}

gres_files() {  # the /dev/null-like files standing in for $GPUS devices (one per GPU index)
    local devices=(/dev/null /dev/zero /dev/full /dev/urandom)
    local IFS=,
    echo "${devices[*]:0:$GPUS}"
}

node_topology() {  # CPUs and their layout as slurmd detects them (plain CPUs=N as fallback)
    local fields
    fields="$(slurmd -C 2>/dev/null | head -n 1 | tr ' ' '\n' \
        | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')"
    if [[ "$fields" == *CPUs=* ]]; then
        echo "${fields% }"
    else
        echo "CPUs=$(nproc)"
    fi
}

write_config() {
    local topology mem_total real_mem tmp gres_node=""
    # The node line must not promise more than slurmd finds, or slurmctld drains the node.
    topology="$(node_topology)"
    mem_total="$(free -m | awk '/^Mem:/ {print $2}')"
    # slurmd drains a node that reports less memory than RealMemory: keep a margin (half the
    # memory on very small machines) so jobs' --mem requests stay schedulable but honest.
    if ((mem_total > 2 * MEM_MARGIN_MB)); then
        real_mem=$((mem_total - MEM_MARGIN_MB))
    else
        real_mem=$((mem_total / 2))
    fi
    if ((GPUS > 0)); then
        gres_node=" Gres=gpu:$GPUS"
    fi
    tmp="$(mktemp "$STATE_DIR/slurm.conf.XXXXXX")"
    cat >"$tmp" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster, not for production use.
ClusterName=$CLUSTER_NAME
# name(address): no DNS needed for the host's own name.
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# No cgroups (containers, gVisor): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No slurmdbd: sacct has nothing to read, so the profile polls job states with squeue.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue keeps finished jobs for MinJobAge seconds: the executor plugin needs to see them, and
# tests read a finished job's TresPerJob and state with 'scontrol show job' for an hour.
MinJobAge=3600
# slurmd fetches this config from slurmctld and caches it under /run/slurm/conf, where client
# commands inside jobs find it: the jobstep drops SLURM_CONF before its nested srun.
SlurmctldParameters=enable_configless
# Time between SIGTERM and SIGKILL on scancel/preemption: a trainer saves its checkpoint in it.
KillWait=30
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
SchedulerParameters=batch_sched_delay=0
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 $topology RealMemory=$real_mem$gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    replace_if_changed "$tmp" "$SLURM_CONF"

    tmp="$(mktemp "$STATE_DIR/gres.conf.XXXXXX")"
    {
        echo "# Written by tests/slurm/cluster.sh: stand-in GPU devices for scheduling tests."
        if ((GPUS > 0)); then
            echo "NodeName=$HOST Name=gpu File=$(gres_files) Count=$GPUS"
        fi
    } >"$tmp"
    replace_if_changed "$tmp" "$STATE_DIR/gres.conf"
}

replace_if_changed() {  # replace_if_changed NEW TARGET: a running cluster keeps an equal file
    if cmp -s "$1" "$2"; then
        rm -f "$1"
    else
        chmod 644 "$1"
        mv "$1" "$2"
        CONFIG_CHANGED=1
    fi
}

munge_works() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    if munge_works; then
        return 0  # a munged is already serving (the system's or ours)
    fi
    if [[ ! -s "$MUNGE_KEY" ]]; then
        install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null; then
            mungekey -c -k "$MUNGE_KEY"
        else
            create-munge-key -f
        fi
    fi
    # munged refuses keys and sockets that are not its own and private.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    rm -f "$MUNGE_RUN/munged.pid"
    runuser -u munge -- munged --pid-file="$MUNGE_RUN/munged.pid"
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && break
        sleep 0.1
    done
    if ! munge_works; then
        log "munged did not start"
        tail -n 20 /var/log/munge/munged.log >&2 || true
        exit 1
    fi
    cp "$MUNGE_RUN/munged.pid" "$OUR_MUNGED"
}

node_state() {  # the node's compact state (idle, mix, alloc, down*, drain, ...) or nothing
    sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1
}

wait_idle() {
    local i state=""
    for ((i = 0; i < WAIT_S * 5; i++)); do
        state="$(node_state)"
        case "$state" in
            idle | mix | alloc | comp) return 0 ;;
            # A node left down/drained by an earlier, interrupted run: it is ours, resume it.
            down | down\* | drain | drain\* | drng | fail)
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.2
    done
    log "node $HOST not idle after ${WAIT_S}s (state: '${state}'); daemon logs follow"
    tail -n 30 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
    return 1
}

start_daemon() {  # start_daemon NAME PIDFILE COMMAND...: start unless running, wait for its pid
    local name=$1 pidfile=$2 i
    shift 2
    pid_alive "$pidfile" && return 0
    # A pid file left by an earlier run would pass for the new daemon before it writes its own.
    rm -f "$pidfile"
    "$@"
    for ((i = 0; i < WAIT_S * 10; i++)); do
        pid_alive "$pidfile" && return 0
        sleep 0.1
    done
    log "$name did not start; daemon logs follow"
    tail -n 30 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
    exit 1
}

start() {
    install -d -m 0755 "$STATE_DIR" "$STATE_DIR/state" "$STATE_DIR/spool" "$STATE_DIR/log"
    install_packages
    # Client commands read /etc/slurm/slurm.conf before the configless cache: inside jobs
    # (where SLURM_CONF is dropped) they would talk to that other cluster.
    if [[ -e /etc/slurm/slurm.conf ]]; then
        log "/etc/slurm/slurm.conf exists: this host belongs to another SLURM cluster"
        exit 4
    fi
    CONFIG_CHANGED=0
    write_config
    if ((CONFIG_CHANGED)) && pid_alive "$STATE_DIR/slurmctld.pid"; then
        log "config changed: restarting the daemons"
        stop_slurm
    fi
    start_munge
    start_daemon slurmctld "$STATE_DIR/slurmctld.pid" slurmctld -f "$SLURM_CONF"
    # slurmd fetches its config from slurmctld at start: wait until slurmctld answers.
    local i
    for ((i = 0; i < WAIT_S * 5; i++)); do
        scontrol ping 2>/dev/null | grep -q "is UP" && break
        sleep 0.2
    done
    # Configless: the config comes from slurmctld (see SlurmctldParameters in slurm.conf).
    start_daemon slurmd "$STATE_DIR/slurmd.pid" \
        env -u SLURM_CONF slurmd --conf-server "127.0.0.1:$CTLD_PORT" -N "$HOST"
    wait_idle || exit 1
    log "up: $(sinfo -h -N -n "$HOST" -o '%N %P %t cpus=%c mem=%m gres=%G')"
    echo "SLURM_CONF=$SLURM_CONF"
}

stop_slurm() {
    if pid_alive "$STATE_DIR/slurmctld.pid"; then
        # Jobs outlive `scontrol shutdown` (slurmstepd keeps running): cancel ours first.
        scancel --partition="$PARTITION" >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 50; i++)); do
            [[ -z "$(squeue -h -p "$PARTITION" -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && break
            sleep 0.2
        done
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    local pidfile
    for pidfile in "$STATE_DIR/slurmd.pid" "$STATE_DIR/slurmctld.pid"; do
        if ! wait_gone "$pidfile" 15; then
            log "$(basename "$pidfile" .pid) ignored shutdown: SIGKILL"
            kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
}

stop() {
    [[ -f "$SLURM_CONF" ]] || return 0
    stop_slurm
    if pid_alive "$OUR_MUNGED"; then
        kill "$(cat "$OUR_MUNGED")"
        wait_gone "$OUR_MUNGED" 10 || kill -KILL "$(cat "$OUR_MUNGED")" 2>/dev/null || true
    fi
    rm -f "$OUR_MUNGED"
    log "stopped"
}

status() {
    local state
    state="$(node_state)"
    [[ -n "$state" ]] || { log "not running"; return 1; }
    sinfo -N -n "$HOST" -o '%N %P %t cpus=%c mem=%m gres=%G'
}

if ! [[ "$GPUS" =~ ^[0-4]$ ]]; then
    log "TDPCR_SLURM_GPUS must be 0..4 (one stand-in device file each), not '$GPUS'"
    exit 2
fi
if [[ "$(id -u)" != 0 ]]; then
    log "must run as root (SLURM daemons and munged)"
    exit 2
fi
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
