#!/usr/bin/env bash
# The weak-label text rules (src/data/feedback.rs) measured on real text:
# coverage and precision of each rule on SGD and USS user turns, against the
# corpora's own signals (see scripts/eval/weak_rules_real.py).
#
#   scripts/eval/weak_rules_real.sh DATA_DIR [OUT.json]
#
# DATA_DIR holds sgd/{train,dev}/dialogues_*.json and/or uss/SGD.txt. Without
# it, the script says SKIPPED and exits 0. Needs python3 (standard library).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="${1:-}"
if [[ -z "$data" || ! -d "$data" || ( ! -d "$data/sgd" && ! -f "$data/uss/SGD.txt" ) ]]; then
    echo "SKIPPED: no SGD or USS data (give DATA_DIR holding sgd/ and uss/)"
    exit 0
fi
out="${2:-/dev/stdout}"
python3 "$root/scripts/eval/weak_rules_real.py" "$root/src/data/feedback.rs" "$data" > "$out"
