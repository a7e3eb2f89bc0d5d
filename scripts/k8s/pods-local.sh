#!/usr/bin/env bash
# Runs the pod commands of label-indexed-job.yaml on this machine, no
# Kubernetes: for each completion index I, the container's command and
# args as written in the manifest, with $(VAR) expanded the way the kubelet
# does (from the container's env, JOB_COMPLETION_INDEX = I) and /data
# mapped to a temporary directory holding a tiny model and logs
# (scripts/slurm/tiny-data.sh) at the manifest's paths. Then the command of
# label-check-job.yaml, then a single-process `labelgen label` and
# scripts/slurm/compare_labels.py on the union. This checks the manifests'
# labelgen command lines and the shard layout; scheduling, the volume and
# retries are Kubernetes's and are not run here.
# Usage: scripts/k8s/pods-local.sh      (LABELGEN_BIN as in scripts/demo.sh; KEEP=1 keeps the directory)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
export LABELGEN_BIN="${LABELGEN_BIN:-$CARGO_TARGET_DIR/release/labelgen}"
python3 -c 'import yaml, pyarrow' 2> /dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml pyarrow
tmp="$(mktemp -d /tmp/labelgen-k8s-pods.XXXXXX)"
trap '[ "${KEEP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT

# The pods' command lines, one per line as a JSON list, /data -> $tmp/data.
python3 - scripts/k8s/label-indexed-job.yaml scripts/k8s/label-check-job.yaml "$tmp/data" > "$tmp/commands" << 'PY'
import json, re, sys, yaml

def expand(text, env):
    # The kubelet's rule: $(VAR) for a defined VAR, $$ for a literal $.
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)

def commands(job, index=None):
    c = job["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for e in c.get("env", []):
        if e["name"] == "JOB_COMPLETION_INDEX":
            env[e["name"]] = str(index)
        elif "value" in e:
            env[e["name"]] = expand(e["value"], env)
    return [expand(a, env) for a in c["command"] + c.get("args", [])]

label_job, check_job = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
data = sys.argv[3]
for i in range(label_job["spec"]["completions"]):
    print(json.dumps([a.replace("/data/", data + "/") for a in commands(label_job, i)]))
print(json.dumps([a.replace("/data/", data + "/") for a in commands(check_job)]))
PY
# The paths the manifests name, filled with the tiny model and logs.
model="$(python3 -c 'import json,sys; a=json.loads(open(sys.argv[1]).readline()); print([x.split("=",1)[1] for x in a if x.startswith("--model=")][0])' "$tmp/commands")"
logs="$(python3 -c 'import json,sys; a=json.loads(open(sys.argv[1]).readline()); print([x.split("=",1)[1] for x in a if x.startswith("--logs=")][0])' "$tmp/commands")"
echo "== tiny model and logs at the manifest's $model and $logs (under $tmp/data)"
scripts/slurm/tiny-data.sh "$tmp/tiny"
mkdir -p "$(dirname "$model")" "$(dirname "$logs")"
mv "$tmp/tiny/model" "$model"
mv "$tmp/tiny/sim/turns" "$logs"

run() { # a JSON list: the container's command (labelgen) and args
    python3 -c 'import json,os,sys; a=json.loads(sys.argv[1]); a[0]=os.environ["LABELGEN_BIN"]; os.execv(a[0], a)' "$1"
}
n=$(($(wc -l < "$tmp/commands") - 1))
echo "== $n label pods, at once"
pids=()
for ((i = 0; i < n; i++)); do
    line="$(sed -n "$((i + 1))p" "$tmp/commands")"
    echo "pod $i: $(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])))' "$line" | sed "s|$tmp/data|/data|g")"
    run "$line" > "$tmp/pod-$i.json" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
out="$(python3 -c 'import json,sys; a=json.loads(open(sys.argv[1]).readline()); print([x.split("=",1)[1] for x in a if x.startswith("--out=")][0].rsplit("/",1)[0])' "$tmp/commands")"
(cd "$out" && find . -name '*.parquet' | sort | sed 's/^/  /')
echo "== the check pod"
line="$(tail -1 "$tmp/commands")"
echo "check: $(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])))' "$line" | sed "s|$tmp/data|/data|g")"
run "$line" | sed "s|$tmp/data|/data|g"
echo "== single-process label, compared with the union"
"$LABELGEN_BIN" label --model "$model" --logs "$logs" --out "$tmp/single" --quiet > /dev/null
python3 scripts/slurm/compare_labels.py "$out" "$tmp/single" | sed "s|$tmp/data|/data|g; s|$tmp|TMP|g"
