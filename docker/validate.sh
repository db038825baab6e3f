#!/usr/bin/env bash
# Validate every deployment artefact under docker/ without a cluster or a Docker engine:
#   - compose.yaml against the compose specification's JSON schema (check-jsonschema's
#     vendored copy of compose-spec.json),
#   - the Kubernetes manifests (rendered with `kubectl kustomize` when kubectl is there,
#     else each file) with kubernetes-validate --strict,
#   - the Prometheus alert rules (promtool check rules) and their unit tests (promtool test
#     rules), and the Prometheus config (promtool check config),
#   - the Grafana dashboard: valid JSON, and every interop_media_* metric that it or the
#     alert rules use is one the service exports (names in src/metrics.rs).
# Tools: `pip install check-jsonschema==0.39.0 kubernetes-validate==1.37.0`, Debian's
# `prometheus` package (promtool). `.ci/run` installs them. Usage: bash docker/validate.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
fail=0
step() { printf -- '--- %s\n' "$1"; }

step "compose.yaml (compose-spec JSON schema)"
# The partner hash is a required variable: give the schema check a placeholder.
check-jsonschema --builtin-schema vendor.compose-spec compose.yaml || fail=1

step "Kubernetes manifests (kubernetes-validate --strict)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize k8s > "$tmp/k8s.yaml" 2>"$tmp/kustomize.err"; then
    echo "rendered with kubectl kustomize: $(grep -c '^kind:' "$tmp/k8s.yaml") resources"
    kubernetes-validate --strict --quiet "$tmp/k8s.yaml" && echo "all valid" || fail=1
else
    [ -s "$tmp/kustomize.err" ] && cat "$tmp/kustomize.err"
    echo "kubectl kustomize unavailable: validating the files directly"
    kubernetes-validate --strict --quiet $(ls k8s/*.yaml | grep -v kustomization.yaml) && echo "all valid" || fail=1
fi

step "Prometheus rules and config (promtool)"
promtool check rules prometheus/alerts.yml || fail=1
(cd prometheus && promtool test rules alerts.test.yml) || fail=1
# prometheus.yml names the rules at their in-container path: check a copy pointing here.
sed "s#/etc/prometheus/alerts.yml#$PWD/prometheus/alerts.yml#" prometheus/prometheus.yml > "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml" || fail=1

step "Grafana dashboard and metric names"
python3 - <<'PY' || fail=1
import json, re, sys
dash = json.load(open("grafana/interop-media.json"))
exprs = []
def walk(p):
    for t in p.get("targets", []):
        exprs.append(t["expr"])
    for c in p.get("panels", []):
        walk(c)
for p in dash["panels"]:
    walk(p)
src = open("../src/metrics.rs").read()
exported = {"interop_media_" + n for n in re.findall(r'"([a-z_]+)",\s*\n?\s*"[A-Z]', src)}
exported |= {"interop_media_" + n for n in re.findall(r'new\(\s*"([a-z_]+)"', src)}
exported |= {"interop_media_build_info"}
rules = open("prometheus/alerts.yml").read()
used = set(re.findall(r"interop_media_[a-z_]+", " ".join(exprs) + rules))
base = lambda n: re.sub(r"_(bucket|sum|count)$", "", n)
missing = sorted(n for n in used if base(n) not in exported and n not in exported)
print(f"{len(dash['panels'])} panels, {len(exprs)} queries, {len(used)} metric names used, {len(exported)} exported")
if missing:
    print("not exported by the service:", ", ".join(missing)); sys.exit(1)
PY

if [ "$fail" -ne 0 ]; then echo "docker/validate.sh: FAILED"; exit 1; fi
echo "docker/validate.sh: all checks passed"
