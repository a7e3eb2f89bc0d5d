#!/usr/bin/env bash
# Slurm smoke test on this one machine: starts a real single-node Slurm
# (Debian's slurm-wlm and munge: apt-get install -y slurm-wlm munge, as
# root) with its own configuration, munge key and ports in a temporary
# directory, makes a tiny model and logs with labelgen, submits the label
# array (N shards, scripts/slurm/submit.sh) and the dependent union check,
# waits for them, and compares the union of the shard outputs with a
# single-process `labelgen label` row by row (compare_labels.py, pyarrow).
# Stops the daemons it started and removes the directory (KEEP=1 keeps it).
#
# Usage: scripts/slurm/smoke.sh [N] [DIALOGUES]      (default 4 shards, 200 dialogues)
# Environment: LABELGEN_BIN (default $CARGO_TARGET_DIR/release/labelgen),
#   SMOKE_PORT (slurmctld's port, slurmd uses the next; default 16817),
#   SMOKE_TIMEOUT (seconds to wait for the jobs; default 900), KEEP=1.
# Not for CI: it needs root, the packages and a few free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-4}"
dialogues="${2:-200}"
port="${SMOKE_PORT:-16817}"
timeout="${SMOKE_TIMEOUT:-900}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
export LABELGEN_BIN="${LABELGEN_BIN:-$CARGO_TARGET_DIR/release/labelgen}"
labelgen="$LABELGEN_BIN"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

[ "$(id -u)" = 0 ] || { echo "run as root: slurmd starts jobs as their users" >&2; exit 2; }
for tool in munged slurmctld slurmd sbatch squeue scontrol python3; do
    command -v "$tool" > /dev/null || { echo "$tool not found: apt-get install -y slurm-wlm munge" >&2; exit 2; }
done
[ -x "$labelgen" ] || { echo "no labelgen at $labelgen: cargo build --release, or set LABELGEN_BIN" >&2; exit 2; }
if ! python3 -c 'import pyarrow' 2> /dev/null; then
    step "python3 -m pip install pyarrow (for compare_labels.py)"
    python3 -m pip install --quiet --disable-pip-version-check pyarrow
fi

# Everything lives here; /tmp is world-writable, so munged needs --force
# for the socket directory, and the smoke directory must be traversable.
dir="$(mktemp -d /tmp/labelgen-slurm-smoke.XXXXXX)"
chmod 755 "$dir"
pids=()
own_conf="" # set once our slurmctld runs: scancel only ever talks to it
cleanup() {
    status=$?
    if [ -n "$own_conf" ]; then
        SLURM_CONF="$own_conf" scancel --quiet --user=root 2> /dev/null || true
    fi
    # Stop only the daemons this script started, newest first, by PID.
    for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
        kill "${pids[k]}" 2> /dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2> /dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $dir"
    else
        rm -rf "$dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap "exit 143" INT TERM
mkdir -p "$dir"/{munge,etc,state,spool,log,data,jobs}

step "machine: $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(slurmctld -V), $(munged --version 2>&1 | head -1)"
step "tiny model and logs: simulate $dialogues dialogues, synth, pretrain 1 epoch, train 1 epoch"
data="$dir/data"
scripts/slurm/tiny-data.sh "$data" "$dialogues"

step "munged (own key and socket in $dir/munge)"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
chmod 700 "$dir/munge"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/munge/munged.pid")")

host="$(hostname -s)"
cat > "$dir/etc/slurm.conf" << CONF
# Single node on localhost, no cgroups, no accounting: the smoke test only.
ClusterName=labelgen-smoke
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=smoke Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/etc/slurm.conf"

step "slurmctld and slurmd (ports $port, $((port + 1)))"
slurmctld -f "$SLURM_CONF" -i
for _ in $(seq 100); do [ -s "$dir/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/slurmctld.pid")")
own_conf="$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$host"
for _ in $(seq 100); do [ -s "$dir/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/slurmd.pid")")
for _ in $(seq 60); do
    state="$(sinfo -h -n "$host" -o %T 2> /dev/null || true)"
    case "$state" in idle* | mixed* | allocated*) break ;; esac
    sleep 1
done
sinfo
case "$state" in idle* | mixed* | allocated*) ;; *)
    echo "node never came up (state '$state'); logs:" >&2
    tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2
    exit 1 ;;
esac

logs="$data/sim/turns" model="$data/model" out="$data/labels-sharded"
step "submit: label array 0-$((n - 1)) and the dependent union check"
echo "+ scripts/slurm/submit.sh $model $logs $out $n --chdir=$dir/jobs"
ids="$(scripts/slurm/submit.sh "$model" "$logs" "$out" "$n" --chdir="$dir/jobs")"
read -r array check <<< "$ids"
echo "array job $array, check job $check (--dependency=afterok:$array)"
started=$SECONDS
while [ -n "$(squeue -h -j "$array,$check" -o %i 2> /dev/null)" ]; do
    if ((SECONDS - started > timeout)); then
        echo "jobs still queued after $timeout s:" >&2
        squeue >&2
        exit 1
    fi
    sleep 2
done
step "jobs done after $((SECONDS - started)) s"
failed=0
while read -r line; do
    field() { { grep -o " $1=[^ ]*" <<< " $line" || true; } | head -1 | cut -d= -f2; }
    task="$(field ArrayTaskId)"
    echo "  job $(field JobId) $(field JobName)${task:+ (array task $task)}: $(field JobState), exit $(field ExitCode)"
    [ "$(field JobState)" = COMPLETED ] || failed=1
done < <(scontrol -o show job "$array"; scontrol -o show job "$check")
for f in "$dir"/jobs/*.out; do
    echo "-- $(basename "$f")"
    cat "$f"
done
[ "$failed" = 0 ] || { echo "FAIL: a job did not complete" >&2; exit 1; }
echo "shard outputs:"
(cd "$out" && find . -name '*.parquet' | sort | sed 's/^/  /')

rerun=$((n - 1))
step "rerun shard $rerun alone, as after a failure: LABELGEN_SHARDS=$n sbatch --array=$rerun --wait"
LABELGEN_SHARDS="$n" sbatch --wait --quiet --chdir="$dir/jobs" --array="$rerun" \
    scripts/slurm/label-array.sbatch "$model" "$logs" "$out"
echo "rerun done; shard directories now: $(cd "$out" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')"
LABELGEN_BIN="$labelgen" bash scripts/slurm/check-union.sbatch "$logs" "$out" "$n"

step "single-process label over the same logs"
"$labelgen" label --model "$model" --logs "$logs" --out "$data/labels-single" --force --quiet > /dev/null
step "compare the union of the shards with the single-process run"
python3 scripts/slurm/compare_labels.py "$out" "$data/labels-single"
step "smoke passed: $n Slurm array shards = one single-process run"
