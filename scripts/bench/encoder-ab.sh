#!/usr/bin/env bash
# Two or more builds of examples/bench_encoder against each other on a noisy
# machine: per round and per shape, each binary runs once (`--quick --shape
# S`), so every binary sees the same stretch of load; then the median (and
# range) of each measure over the rounds, and each binary's median against
# the first's.
#
# Usage: scripts/bench/encoder-ab.sh [-r ROUNDS] NAME=BINARY NAME=BINARY...
#   e.g. NAME=BINARY: before=/tmp/bench_before (a copy of
#   $CARGO_TARGET_DIR/release/examples/bench_encoder built at a commit).
# THREADS (default: the cores) sets RAYON_NUM_THREADS.
set -euo pipefail
rounds=4
if [ "${1:-}" = -r ]; then rounds="$2"; shift 2; fi
if [ "$#" -lt 2 ]; then
    echo "usage: $0 [-r ROUNDS] NAME=BINARY NAME=BINARY..." >&2
    exit 2
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export RAYON_NUM_THREADS="${THREADS:-$(nproc)}"
names=()
echo "== $(date -u +%FT%TZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $RAYON_NUM_THREADS threads, $rounds rounds"
for round in $(seq 1 "$rounds"); do
    for shape in default-2x128 4x256 minilm-6x384; do
        for entry in "$@"; do
            name="${entry%%=*}"
            "${entry#*=}" --quick --shape "$shape" --json "$out/$name~$shape~$round.json" > /dev/null
        done
    done
    echo "round $round done $(date -u +%T)"
done
for entry in "$@"; do names+=("${entry%%=*}"); done
python3 - "$out" "${names[@]}" <<'PY'
import collections, glob, json, os, statistics, sys
out, names = sys.argv[1], sys.argv[2:]
runs = collections.defaultdict(list)
for path in glob.glob(f"{out}/*.json"):
    name, shape, _ = os.path.basename(path)[:-5].split("~")
    config = json.load(open(path))["configs"][shape]
    runs[name, shape, "inference turns/s"].append(config["inference_turns_per_s"])
    runs[name, shape, "train tokens/s"].append(config["train_tokens_per_s"])
for shape in ["default-2x128", "4x256", "minilm-6x384"]:
    for measure in ["inference turns/s", "train tokens/s"]:
        first = statistics.median(runs[names[0], shape, measure])
        cells = []
        for name in names:
            values = runs[name, shape, measure]
            median = statistics.median(values)
            cells.append(f"{name} {median:,.0f} ({min(values):,.0f}-{max(values):,.0f}) {median / first:.2f}x")
        print(f"{shape:<14} {measure:<18} " + " | ".join(cells))
PY
