#!/usr/bin/env bash
# From nothing to the loop on a local kind cluster: a finished `training` run whose model is
# served and answers with its prediction records and inbox on, then a `monitoring` run on
# darkened traffic whose drift alert starts exactly one `retraining` run, and a second
# monitoring run right after it that starts none (with the trigger's cool-down).
# Needs docker (or podman), kind, kubectl, and a GCS bucket with two service-account keys.
# The CI machines have no Kubernetes, so only --print-setup runs in the tests
# (tests/pure/test_kustomize.py); every other step is run by hand (docs/cluster-loop.md).
#
#   scripts/kind_e2e.sh                 # everything, up to a served model
#   scripts/kind_e2e.sh --print-setup   # the cluster objects it would apply (kubectl only)
#   scripts/kind_e2e.sh --delete        # remove the cluster
#
# Environment:
#   GCS_BUCKET            required: bucket for the pipeline root, the DVC remote and the bentos
#   GCS_KEY_FILE          required: key JSON of the pipeline's account (roles/storage.objectAdmin
#                         on the bucket); mounted into every step as gcs-credentials
#   GCS_SERVING_KEY_FILE  required: key JSON of a SEPARATE account with roles/storage.objectViewer
#                         and roles/storage.objectCreator (create-only: the prediction records
#                         and the inbox, never an overwrite or delete); the serving pods get
#                         only this one
#   DATA_REPO_URL         optional: git URL (reachable from the pods) of a DVC data repository
#                         whose remote the pipeline key can read. Default: the bundled data set,
#                         pushed to gs://$GCS_BUCKET/planets-mlops/dvcstore and served from an
#                         in-cluster git daemon.
#   CLUSTER_NAME          kind cluster name (default planets)
#   KIND_NODE_IMAGE       node image, pinned (default kindest/node:v1.30.13)
#   KFP_VERSION           KFP standalone manifests release (default 2.17.0: the SDK's line)
#   ENGINE                docker | podman: builds the images and exports them to kind (default docker)
#   EPOCHS                training epochs of the e2e run (default 3)
#   LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY
#                         optional: a Label Studio the pods reach, with a project of the data
#                         set (LABEL_STUDIO_PROJECT, default planets). With them the retraining
#                         run the alert starts is waited for; without them the script checks
#                         that the alert started it (as the runner, once) and stops there:
#                         retraining reads its labels from Label Studio.
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER_NAME="${CLUSTER_NAME:-planets}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.30.13}"
# The backend must come from the SDK's release line (requirements.lock pins kfp 2.17.x):
# the 2.17 driver/launcher are what tests/pure/test_rbac.py checks the runner's Role against.
KFP_VERSION="${KFP_VERSION:-2.17.0}"
ENGINE="${ENGINE:-docker}"
EPOCHS="${EPOCHS:-3}"
# Images are loaded into the nodes, never pulled: any registry name works.
export PLANETS_IMAGE_REGISTRY="${PLANETS_IMAGE_REGISTRY:-kind.local/planets-mlops}"
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
KFP_NS=kubeflow
SERVING_NS=planets-serving
GIT_PORT=9418
BUILD="build/kind"

die() { echo "kind_e2e: $*" >&2; exit 1; }

check_bucket() {
  [[ -n "${GCS_BUCKET:-}" ]] || die "GCS_BUCKET is not set. Export the name of your bucket, e.g. GCS_BUCKET=my-project-planets."
  [[ "$GCS_BUCKET" =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]] ||
    die "GCS_BUCKET='$GCS_BUCKET' is not a bucket name (3-63 of a-z 0-9 . _ -, no gs:// prefix)."
  PIPELINE_ROOT="gs://$GCS_BUCKET/planets-mlops/kind/pipeline-root"
}

# The kind overlay with the bucket filled in; Secret templates stay placeholders.
render_setup() {
  kubectl kustomize kustomize/overlays/kind |
    sed "s#gs://REPLACE-WITH-BUCKET/planets-mlops/kind/pipeline-root#$PIPELINE_ROOT#"
}

if [[ "${1:-}" == "--print-setup" ]]; then
  check_bucket
  render_setup
  exit 0
fi
if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$CLUSTER_NAME"
  exit 0
fi

check_bucket
for tool in "$ENGINE" kind kubectl git; do
  command -v "$tool" >/dev/null || die "missing $tool: install it first"
done
for var in GCS_KEY_FILE GCS_SERVING_KEY_FILE; do
  [[ -r "${!var:-}" ]] || die "$var='${!var:-}' is not a readable key file (see the header of $0)."
done
key_email() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("client_email", ""))' "$1"; }
if [[ "$(key_email "$GCS_KEY_FILE")" == "$(key_email "$GCS_SERVING_KEY_FILE")" ]]; then
  die "GCS_SERVING_KEY_FILE is the pipeline's own account ($(key_email "$GCS_KEY_FILE")). Serving pods must get a separate account (roles/storage.objectViewer + objectCreator)."
fi

echo "==> kind cluster $CLUSTER_NAME ($KIND_NODE_IMAGE)"
if ! kind get clusters | grep -qx "$CLUSTER_NAME"; then
  kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME"

echo "==> KFP standalone $KFP_VERSION"
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"

# After KFP, always: KFP's install owns kfp-launcher and resets it on every (re)install.
echo "==> cluster setup (kustomize/overlays/kind, bucket $GCS_BUCKET)"
setup="$(mktemp)"
render_setup > "$setup"
if kubectl -n "$KFP_NS" get secret gcs-credentials >/dev/null 2>&1; then
  kubectl apply -f "$setup" -l 'planets-mlops.io/template!=secret'   # keep the filled Secrets
else
  kubectl apply -f "$setup"
fi
rm -f "$setup"
kubectl -n "$KFP_NS" create secret generic gcs-credentials --from-file=key.json="$GCS_KEY_FILE" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$SERVING_NS" create secret generic gcs-serving-credentials \
  --from-file=key.json="$GCS_SERVING_KEY_FILE" --dry-run=client -o yaml | kubectl apply -f -
if [[ -n "${LABEL_STUDIO_URL:-}" ]]; then
  kubectl -n "$KFP_NS" create secret generic label-studio --from-literal=LABEL_STUDIO_URL="$LABEL_STUDIO_URL" \
    --from-literal=LABEL_STUDIO_API_KEY="${LABEL_STUDIO_API_KEY:?LABEL_STUDIO_API_KEY is needed with LABEL_STUDIO_URL}" \
    --dry-run=client -o yaml | kubectl apply -f -
fi
# Retries that retry failures: Argo's default policy (upstream: OnError) -> Always.
kubectl -n "$KFP_NS" patch configmap workflow-controller-configmap --type merge \
  --patch-file kustomize/argo/workflow-controller-configmap-patch.yaml
root="$(kubectl -n "$KFP_NS" get configmap kfp-launcher -o jsonpath='{.data.defaultPipelineRoot}')"
[[ "$root" == "$PIPELINE_ROOT" ]] || die "kfp-launcher says defaultPipelineRoot='$root', expected $PIPELINE_ROOT."

echo "==> waiting for KFP"
kubectl -n "$KFP_NS" wait --for=condition=Available --timeout=900s deployment --all

echo "==> images (built from this checkout, loaded into the nodes)"
# The tags derive from the source (components/images.py), so the pipeline compiled below
# names exactly these images; they are never pulled (imagePullPolicy IfNotPresent).
scripts/build_images.sh --load --engine "$ENGINE" --only runtime --only train-gpu --only serving
images="$("$PYTHON" -c 'from planets_mlops.components.images import ALL_IMAGES; print(" ".join(ALL_IMAGES.values()))')"
for image in $images; do
  archive="$(mktemp --suffix=.tar)"
  "$ENGINE" save -o "$archive" "$image"
  kind load image-archive --name "$CLUSTER_NAME" "$archive"
  rm -f "$archive"
done
RUNTIME_IMAGE="$("$PYTHON" -c 'from planets_mlops.components.images import RUNTIME_IMAGE; print(RUNTIME_IMAGE)')"

if [[ -z "${DATA_REPO_URL:-}" ]]; then
  echo "==> data repository (bundled data set; DVC remote gs://$GCS_BUCKET/planets-mlops/dvcstore)"
  work="$(mktemp -d)"
  GOOGLE_APPLICATION_CREDENTIALS="$GCS_KEY_FILE" "$PYTHON" - "$work/planets-data" "gs://$GCS_BUCKET/planets-mlops/dvcstore" <<'PY'
import sys
from pathlib import Path

from planets_mlops.datarepo import create_data_repo

print(create_data_repo(Path("data/planets/raw"), Path(sys.argv[1]), sys.argv[2], data_path="data/raw"))
PY
  git clone -q --bare "$work/planets-data" "$work/planets-data.git"
  # A git daemon in the runtime image (it has git) serves the repository to the pods.
  kubectl -n "$KFP_NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: planets-data-git, labels: {app: planets-data-git}}
spec:
  containers:
    - name: git
      image: $RUNTIME_IMAGE
      imagePullPolicy: IfNotPresent
      command: [git, daemon, --reuseaddr, --export-all, --base-path=/srv, --port=$GIT_PORT, /srv]
      ports: [{containerPort: $GIT_PORT}]
      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: 500m, memory: 256Mi}}
      volumeMounts: [{name: srv, mountPath: /srv}]
  volumes: [{name: srv, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: planets-data-git}
spec:
  selector: {app: planets-data-git}
  ports: [{port: $GIT_PORT, targetPort: $GIT_PORT}]
YAML
  kubectl -n "$KFP_NS" wait --for=condition=Ready --timeout=180s pod/planets-data-git
  kubectl -n "$KFP_NS" cp "$work/planets-data.git" planets-data-git:/srv/planets-data.git
  rm -rf "$work"
  DATA_REPO_URL="git://planets-data-git.$KFP_NS.svc.cluster.local:$GIT_PORT/planets-data.git"
fi

echo "==> compile for kind: CPU only (no GPU node pool), key Secrets, retries, timeouts"
"$PYTHON" - "$BUILD" <<'PY'
import sys
from pathlib import Path

from planets_mlops.pipelines.compile import compile_all
from planets_mlops.pipelines.platform import KIND, GpuOptions

for path in compile_all(Path(sys.argv[1]), GpuOptions(count=0, cpu="2", memory="4Gi"), KIND):
    print(path)
PY

echo "==> run training (pipeline root $PIPELINE_ROOT), deploy, and wait"
port="$("$PYTHON" -c 'from planets_mlops.app.dev.net import free_port; print(free_port())')"
kubectl -n "$KFP_NS" port-forward svc/ml-pipeline "$port:8888" >/dev/null &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
sleep 3
"$PYTHON" - "http://127.0.0.1:$port" "$BUILD/training.yaml" "$DATA_REPO_URL" "$PIPELINE_ROOT" "$EPOCHS" <<'PY'
import sys

import kfp

host, package, repo, root, epochs = sys.argv[1:]
client = kfp.Client(host=host)
# The pipeline root is passed per run: KFP 2.17's backend ignores a compiled default root
# and falls back to the kfp-launcher ConfigMap, which a KFP re-install resets.
run = client.create_run_from_pipeline_package(
    package,
    arguments={
        "data_repo_url": repo,
        "data_rev": "main",
        "train_epochs": int(epochs),
        "deploy": True,
        # The service records its predictions and keeps what it rejects for labelling.
        "serving_monitoring_uri": f"gs://{root.split('/')[2]}/planets-mlops/kind/monitoring",
        "serving_inbox_uri": f"gs://{root.split('/')[2]}/planets-mlops/kind/inbox",
    },
    run_name="kind-e2e-training",
    experiment_name="planets-kind",
    pipeline_root=root,
    service_account="planets-pipeline-runner",
)
print("run", run.run_id)
result = client.wait_for_run_completion(run.run_id, timeout=3600)
state = result.state
print("state", state)
sys.exit(0 if state == "SUCCEEDED" else 1)
PY

echo "==> the served model answers"
kubectl -n "$SERVING_NS" rollout status deployment/planets-classifier --timeout=300s
serve_port="$("$PYTHON" -c 'from planets_mlops.app.dev.net import free_port; print(free_port())')"
kubectl -n "$SERVING_NS" port-forward svc/planets-classifier "$serve_port:3000" >/dev/null &
serve_forward=$!
trap 'kill "$forward" "$serve_forward" 2>/dev/null || true' EXIT
sleep 3
curl -fsS -F image=@data/planets/raw/Mars/Mars_0.jpg "http://127.0.0.1:$serve_port/predict"
echo

echo "==> monitoring: darkened traffic to the served model, then a drift check"
# 100 of the bundled extra images (every class), darkened: an under-exposed camera.
"$PYTHON" - "http://127.0.0.1:$serve_port" <<'PY'
import sys
from pathlib import Path

import httpx

from planets_mlops.app.dev import traffic

url = sys.argv[1]
sent = 0
with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
    for path in traffic.extra_images(Path("data/planets/extra"))[::5][:100]:
        dark = traffic.shift_image(path.read_bytes(), "darken")
        client.post("/predict", files={"image": (f"{path.stem}.jpg", dark, "image/jpeg")}).raise_for_status()
        sent += 1
print("sent", sent, "darkened images to", httpx.get(f"{url}/metadata", trust_env=False).json()["model_tag"])
PY
# The service writes a batch of records at least every 60 s (MonitoringParams.batch_age_s).
sleep 90
"$PYTHON" - "http://127.0.0.1:$port" "http://127.0.0.1:$serve_port" "$BUILD" "$DATA_REPO_URL" "$PIPELINE_ROOT" \
  "$GCS_BUCKET" "${LABEL_STUDIO_URL:+yes}" "${LABEL_STUDIO_PROJECT:-planets}" <<'PY'
import sys
import time

import httpx
import kfp
import yaml

from planets_mlops.monitoring.trigger import RUN_PREFIX

host, service, build, repo, root, bucket, with_labels, project = sys.argv[1:]
client = kfp.Client(host=host)
print("production now:", httpx.get(f"{service}/metadata", trust_env=False).json()["model_tag"])
# The alert starts the uploaded `planets-retraining` pipeline (its newest version): upload this
# build's, as `planets-mlops upload` names it.
package = f"{build}/retraining.yaml"
found = client.get_pipeline_id("planets-retraining")
if found:
    client.upload_pipeline_version(package, f"kind-{int(time.time())}", pipeline_id=found)
else:
    client.upload_pipeline(
        package, pipeline_name="planets-retraining", description="kind e2e [created by planets-mlops]"
    )
declared = yaml.safe_load(open(f"{build}/monitoring.yaml"))["root"]["inputDefinitions"]["parameters"]
arguments = {
    "records_uri": f"gs://{bucket}/planets-mlops/kind/monitoring",
    # No version named: each run asks the deployed service's /metadata which model is
    # production (tracking is off on kind), as a schedule would after the next deploy.
    "tracking": False,
    "service_url": "http://planets-classifier.planets-serving.svc.cluster.local:3000",
    "window_hours": 1,
    "min_records": 50,
    "start_retraining": True,
    "retraining_arguments": {
        "data_repo_url": repo,
        "data_rev": "main",
        "label_studio_project": project,
        "inbox_uri": f"gs://{bucket}/planets-mlops/kind/inbox",
        "deploy": True,
        "serving_monitoring_uri": f"gs://{bucket}/planets-mlops/kind/monitoring",
        "serving_inbox_uri": f"gs://{bucket}/planets-mlops/kind/inbox",
    },
}
# Where the pipeline passes its run settings on to the runs its alert starts, name them.
for name, value in (("retraining_service_account", "planets-pipeline-runner"), ("retraining_pipeline_root", root)):
    if name in declared:
        arguments[name] = value


def retraining_runs():
    runs = client.list_runs(page_size=100, sort_by="created_at desc").runs or []
    # The alert names its runs retraining-<trigger key>-<UTC stamp> (monitoring.trigger.run_name).
    return [r for r in runs if r.display_name.startswith(f"{RUN_PREFIX}-")]


before = {r.run_id for r in retraining_runs()}
for attempt in (1, 2):
    run = client.create_run_from_pipeline_package(
        f"{build}/monitoring.yaml",
        arguments=arguments,
        run_name=f"kind-e2e-monitoring-{attempt}",
        experiment_name="planets-kind",
        pipeline_root=root,
        service_account="planets-pipeline-runner",
    )
    state = client.wait_for_run_completion(run.run_id, timeout=1800).state
    print("monitoring run", attempt, run.run_id, state)
    if state != "SUCCEEDED":
        sys.exit(f"monitoring run {attempt} ended {state}")
    started = [r for r in retraining_runs() if r.run_id not in before]
    print("retraining runs started by the alert so far:", [r.run_id for r in started])
    if len(started) != 1:
        # With de-duplicated triggers the second drift verdict of the same episode starts none.
        sys.exit(f"expected exactly one retraining run after monitoring run {attempt}, found {len(started)}")
retraining = started[0]
detail = client.get_run(retraining.run_id)
account = getattr(detail, "service_account", "") or ""
print("retraining run", retraining.run_id, "service account", account or "(server default)")
if account != "planets-pipeline-runner":
    sys.exit("the alert's retraining run does not run as planets-pipeline-runner: it cannot read the bucket")
if not with_labels:
    print("not awaited: the retraining run reads its labels from Label Studio (set LABEL_STUDIO_URL)")
    sys.exit(0)
state = client.wait_for_run_completion(retraining.run_id, timeout=3600).state
print("retraining run", retraining.run_id, state)
sys.exit(0 if state == "SUCCEEDED" else 1)
PY

cat <<MSG
Done. KFP UI: kubectl -n $KFP_NS port-forward svc/ml-pipeline-ui 8080:80, then http://localhost:8080
(it reads the gs:// artifacts with the gcs-credentials key named in kfp-launcher's providers).
MSG
