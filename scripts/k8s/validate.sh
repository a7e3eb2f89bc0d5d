#!/usr/bin/env bash
# Validates the manifests in scripts/k8s without changing any cluster:
# 1. `kubectl apply --dry-run=client -f` on each (and --dry-run=server when
#    the current context reaches a cluster). kubectl needs an API server
#    even for a client dry run: it maps kinds and fetches the schema from
#    it, so without one this step reports that and goes on.
# 2. kubernetes-validate --strict (PyPI; installed with pip if missing): the
#    Kubernetes JSON schemas it ships, offline, for each version in
#    K8S_VERSIONS (default "1.29.0 1.37.0": the oldest these manifests
#    support, and the newest it knows); unknown fields are errors.
# 3. The manifests agree with each other: completions = SHARDS, and the
#    check job reads the labels and logs the indexed job writes and reads.
# Usage: scripts/k8s/validate.sh
set -euo pipefail
cd "$(dirname "$0")"
manifests=(data-pvc.yaml label-indexed-job.yaml label-check-job.yaml cronjob.yaml)
status=0

echo "== kubectl apply --dry-run=client"
if ! command -v kubectl > /dev/null; then
    echo "kubectl not found (apt-get install kubernetes-client): skipped"
elif ! kubectl version --request-timeout=5s > /dev/null 2>&1; then
    kubectl version --client 2>&1 | sed -n 1p
    for validate in true false; do
        echo "+ kubectl apply --dry-run=client --validate=$validate -f ${manifests[0]}"
        kubectl apply --dry-run=client --validate=$validate --request-timeout=5s -f "${manifests[0]}" 2>&1 | tail -1 | sed 's/^/  /' || true
    done
    echo "no API server reachable from the current context: kubectl's dry runs (client and server) not run"
else
    kubectl version --request-timeout=5s 2>&1 | sed -n 1,2p
    for f in "${manifests[@]}"; do
        echo "+ kubectl apply --dry-run=client -f $f"
        kubectl apply --dry-run=client -f "$f" || status=1
        echo "+ kubectl apply --dry-run=server -f $f"
        kubectl apply --dry-run=server -f "$f" || status=1
    done
fi

echo "== kubernetes-validate --strict"
if ! command -v kubernetes-validate > /dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
echo "kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -1)"
for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
    kubernetes-validate --strict -k "$version" "${manifests[@]}" || status=1
done

echo "== consistency"
python3 - label-indexed-job.yaml label-check-job.yaml << 'PY' || status=1
import sys, yaml
job, check = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
spec = job["spec"]
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
args = dict(a.split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)
check_args = check["spec"]["template"]["spec"]["containers"][0]["args"]
problems = []
if spec["completionMode"] != "Indexed":
    problems.append("completionMode is not Indexed")
if str(spec["completions"]) != env["SHARDS"]:
    problems.append(f"completions {spec['completions']} != SHARDS {env['SHARDS']}")
if spec["parallelism"] > spec["completions"]:
    problems.append("parallelism > completions")
if args["--shard"] != "$(JOB_COMPLETION_INDEX)/$(SHARDS)":
    problems.append(f"--shard is {args['--shard']}")
if env["OUT"] not in check_args or f"--turns={args['--logs']}" not in check_args:
    problems.append(f"the check job reads {check_args}, the label job writes {env['OUT']} from {args['--logs']}")
print("\n".join(problems) or f"N = {env['SHARDS']} shards, --shard {args['--shard']}, "
      f"out {env['OUT']}/shard-I-of-N, checked by label-check-job.yaml: consistent")
sys.exit(1 if problems else 0)
PY
[ "$status" = 0 ] && echo "== valid"
exit "$status"
