#!/usr/bin/env bash
# Submits a sharded `labelgen label` run to Slurm: a job array of N tasks
# (label-array.sbatch, task I runs `label --shard I/N` into OUT/shard-I-of-N)
# and, after all of them succeed, check-union.sbatch (it merges nothing:
# the shards are part files of one dataset; it validates their union).
# Prints "ARRAY_JOB_ID CHECK_JOB_ID".
#
# Usage: scripts/slurm/submit.sh MODEL LOGS OUT [N] [SBATCH_OPTION...]
#   scripts/slurm/submit.sh models/labeler logs/day/turns labels/day 16 --partition=cpu --cpus-per-task=4
# Extra options go to both sbatch calls. LABELGEN_BIN and the other
# variables of label-array.sbatch travel with the environment.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
# Absolute paths: the jobs may start in another directory (--chdir).
model="$(realpath "$1")" logs="$(realpath "$2")" out="$(realpath -m "$3")"
n="${4:-4}"
shift $(($# < 4 ? $# : 4))
case "$n" in '' | *[!0-9]* | 0) echo "N must be a positive integer, got '$n'" >&2; exit 2 ;; esac
array=$(sbatch --parsable --array="0-$((n - 1))" "$@" "$here/label-array.sbatch" "$model" "$logs" "$out")
array="${array%%;*}"
check=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" \
    "$here/check-union.sbatch" "$logs" "$out" "$n")
check="${check%%;*}"
echo "$array $check"
